import Crypto
import Vapor

/// The host platform's backend: `Authorization: Bearer <ADMIN_API_KEY>` on /api/admin/*.
/// Without ADMIN_API_KEY the admin routes are off (404 feature_disabled).
struct AdminAuthMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        guard let key = request.deps.config.adminAPIKey else { throw APIError.featureDisabled("The admin API (ADMIN_API_KEY)") }
        guard let bearer = request.headers.bearerAuthorization, SecretCompare.equal(bearer.token, key) else {
            throw APIError.unauthorized("Missing or invalid admin API key")
        }
        return try await next.respond(to: request)
    }
}

/// `/metrics` and `/ready`: public unless METRICS_TOKEN is set, then `Authorization: Bearer <it>`.
struct MetricsAuthMiddleware: Middleware {
    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        if let token = request.deps.config.metricsToken {
            guard let bearer = request.headers.bearerAuthorization, SecretCompare.equal(bearer.token, token) else {
                var error = APIError.unauthorized("This probe needs the METRICS_TOKEN bearer token")
                error.headers.replaceOrAdd(name: .wwwAuthenticate, value: "Bearer")
                return request.eventLoop.makeFailedFuture(error)
            }
        }
        return next.respond(to: request)
    }
}

enum SecretCompare {
    /// Constant-time in the secret's content: compares fixed-size digests.
    static func equal(_ a: String, _ b: String) -> Bool {
        let da = SHA256.hash(data: Array(a.utf8)), db = SHA256.hash(data: Array(b.utf8))
        return zip(da, db).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
