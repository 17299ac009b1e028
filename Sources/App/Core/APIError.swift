import Vapor

/// Every client-visible failure: `{"success": false, "error": {"code", "message"}}` with `status`.
struct APIError: AbortError, Sendable {
    let status: HTTPResponseStatus
    let code: String
    let message: String
    var headers: HTTPHeaders = [:]

    var reason: String { message }

    init(_ status: HTTPResponseStatus, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func validation(_ message: String) -> APIError { APIError(.badRequest, "validation_error", message) }
    static func unauthorized(_ message: String = "Missing or invalid credentials") -> APIError {
        var e = APIError(.unauthorized, "unauthorized", message)
        e.headers.replaceOrAdd(name: .wwwAuthenticate, value: "Bearer")
        return e
    }
    static func forbidden(_ message: String = "You are not allowed to do this") -> APIError { APIError(.forbidden, "forbidden", message) }
    static func notFound(_ code: String, _ message: String) -> APIError { APIError(.notFound, code, message) }
    static func featureDisabled(_ feature: String) -> APIError {
        APIError(.notFound, "feature_disabled", "\(feature) is not configured on this server")
    }
}

struct ErrorBody: Content {
    struct Detail: Content { let code: String; let message: String }
    var success = false
    let error: Detail
}
