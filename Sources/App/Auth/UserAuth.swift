import JWT
import NIOConcurrencyHelpers
import Vapor

/// The caller, as named by a verified bearer JWT. Identity never comes from the body or query.
struct AuthUser: Authenticatable, Sendable {
    let id: String
}

struct UserClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var iss: IssuerClaim?
    var aud: AudienceClaim?

    /// Time-based checks happen in `JWTVerifier` against the injected clock.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Verifies host-platform JWTs (HS256, JWT_SECRET), checking exp and, when configured, iss/aud.
struct JWTVerifier: Sendable {
    let keys: JWTKeyCollection
    let settings: AppConfig.JWTSettings
    let clock: AppClock
    /// Tokens already verified (signature, iss, aud, subject) → subject and expiry. A frontend
    /// sends the same JWT many times; its signature cannot change, its expiry is checked each time.
    let verified = NIOLockedValueBox([String: (user: AuthUser, exp: Date)]())
    static let verifiedLimit = 10_000

    static func make(_ settings: AppConfig.JWTSettings, clock: AppClock) async -> JWTVerifier {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: settings.secret), digestAlgorithm: .sha256)
        return JWTVerifier(keys: keys, settings: settings, clock: clock)
    }

    /// The memoized answer for a token verified before (nil: not seen yet).
    func verifiedBefore(_ token: String) throws -> AuthUser? {
        guard let hit = verified.withLockedValue({ $0[token] }) else { return nil }
        guard hit.exp > clock.now() else { throw APIError(.unauthorized, "token_expired", "Bearer token has expired") }
        return hit.user
    }

    func verify(_ token: String) async throws -> AuthUser {
        if let hit = try verifiedBefore(token) { return hit }
        let user = try await verifyFully(token)
        return user
    }

    private func verifyFully(_ token: String) async throws -> AuthUser {
        let claims: UserClaims
        do {
            claims = try await keys.verify(token, as: UserClaims.self)
        } catch {
            throw APIError.unauthorized("Invalid bearer token")
        }
        guard claims.exp.value > clock.now() else { throw APIError(.unauthorized, "token_expired", "Bearer token has expired") }
        if let issuer = settings.issuer, claims.iss?.value != issuer {
            throw APIError.unauthorized("Bearer token has the wrong issuer")
        }
        if let audience = settings.audience, !(claims.aud?.value.contains(audience) ?? false) {
            throw APIError.unauthorized("Bearer token has the wrong audience")
        }
        let sub = claims.sub.value
        guard Validation.isValidUserID(sub) else { throw APIError.unauthorized("Bearer token has an invalid subject") }
        let user = AuthUser(id: sub)
        if token.utf8.count <= 4096 {
            verified.withLockedValue { cache in
                if cache.count >= Self.verifiedLimit { cache.removeAll(keepingCapacity: true) }
                cache[token] = (user, claims.exp.value)
            }
        }
        return user
    }

    /// Signs a token as the host platform would (dev tokens, tests).
    func sign(userID: String, expiresIn: TimeInterval) async throws -> String {
        let exp = Date(timeIntervalSince1970: (clock.now().timeIntervalSince1970 + expiresIn).rounded(.down))
        let claims = UserClaims(
            sub: .init(value: userID), exp: .init(value: exp),
            iss: settings.issuer.map { .init(value: $0) }, aud: settings.audience.map { .init(value: [$0]) }
        )
        return try await keys.sign(claims)
    }
}

/// Requires a valid member/creator bearer token on every route it guards.
struct UserAuthMiddleware: Middleware {
    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        guard let bearer = request.headers.bearerAuthorization else { return request.eventLoop.makeFailedFuture(APIError.unauthorized()) }
        let jwt = request.deps.jwt
        // A token seen before is answered without a task hop; a new one is verified by jwt-kit (async).
        do {
            if let user = try jwt.verifiedBefore(bearer.token) {
                request.auth.login(user)
                return next.respond(to: request)
            }
        } catch {
            return request.eventLoop.makeFailedFuture(error)
        }
        return request.eventLoop.makeFutureWithTask { try await jwt.verify(bearer.token) }.flatMap { user in
            request.auth.login(user)
            return next.respond(to: request)
        }
    }
}

extension Request {
    /// The authenticated caller; only valid behind `UserAuthMiddleware`.
    var caller: AuthUser {
        get throws {
            guard let user = auth.get(AuthUser.self) else { throw APIError.unauthorized() }
            return user
        }
    }
}
