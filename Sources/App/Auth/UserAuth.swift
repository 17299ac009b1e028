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
    var iat: IssuedAtClaim?
    var nbf: NotBeforeClaim?

    /// Time-based checks happen in `JWTVerifier` against the injected clock.
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Verifies host-platform JWTs: the header must say HS256 (nothing else is accepted, whatever
/// the signature), the HMAC must match JWT_SECRET, `exp` must be in the future, `nbf` and `iat`
/// not in the future (60 s leeway), the lifetime at most JWT_MAX_AGE_SECONDS, and iss/aud
/// when configured.
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
        guard Self.headerIsHS256(token) else { throw APIError.unauthorized("Invalid bearer token") }
        let claims: UserClaims
        do {
            claims = try await keys.verify(token, as: UserClaims.self)
        } catch {
            throw APIError.unauthorized("Invalid bearer token")
        }
        let now = clock.now()
        guard claims.exp.value > now else { throw APIError(.unauthorized, "token_expired", "Bearer token has expired") }
        let leeway = settings.leewaySeconds
        if let nbf = claims.nbf?.value, nbf > now.addingTimeInterval(leeway) {
            throw APIError(.unauthorized, "token_not_yet_valid", "Bearer token is not valid yet (nbf)")
        }
        if let iat = claims.iat?.value, iat > now.addingTimeInterval(leeway) {
            throw APIError.unauthorized("Bearer token was issued in the future (iat)")
        }
        let issued = min(claims.iat?.value ?? now, now)
        guard claims.exp.value.timeIntervalSince(issued) <= settings.maxAgeSeconds + leeway else {
            throw APIError.unauthorized("Bearer token lives longer than this service accepts (JWT_MAX_AGE_SECONDS)")
        }
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

    /// The header, decoded: exactly `"alg": "HS256"` (a token naming `none`, HS384 or RS256 is
    /// refused even if its signature happens to be an HS256 MAC), `typ` JWT if present, no `crit`.
    static func headerIsHS256(_ token: String) -> Bool {
        guard let dot = token.utf8.firstIndex(of: UInt8(ascii: ".")) else { return false }
        var b64 = String(token[..<dot]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard b64.utf8.count <= 1024 else { return false }
        while b64.utf8.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64),
              let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        guard header["alg"] as? String == "HS256", header["crit"] == nil else { return false }
        if let typ = header["typ"] { return (typ as? String)?.uppercased() == "JWT" }
        return true
    }

    /// Signs a token as the host platform would (dev tokens, tests).
    func sign(userID: String, expiresIn: TimeInterval) async throws -> String {
        let now = Date(timeIntervalSince1970: clock.now().timeIntervalSince1970.rounded(.down))
        let claims = UserClaims(
            sub: .init(value: userID), exp: .init(value: now.addingTimeInterval(expiresIn.rounded(.down))),
            iss: settings.issuer.map { .init(value: $0) }, aud: settings.audience.map { .init(value: [$0]) },
            iat: .init(value: now)
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
