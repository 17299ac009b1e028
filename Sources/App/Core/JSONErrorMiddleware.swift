import Vapor

/// Turns every error into the API's JSON error shape. Internal errors are logged with their
/// type only and never echo details to the client.
/// Future-based (not AsyncMiddleware): every async middleware adds a task hop to every request.
struct JSONErrorMiddleware: Middleware {
    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).flatMapError { error in
            request.eventLoop.makeSucceededFuture(Self.response(for: error, request: request))
        }
    }

    static func response(for error: any Error, request: Request) -> Response {
        let status: HTTPResponseStatus
        let code: String
        let message: String
        var headers: HTTPHeaders = [:]
        switch error {
        case let e as APIError:
            (status, code, message, headers) = (e.status, e.code, e.message, e.headers)
        case let e as DecodingError:
            (status, code, message) = (.badRequest, "invalid_body", Self.describe(e))
        case let e as any AbortError where e.status == .notFound && !(e is APIError):
            // The router has no such path for this method; if another method has it, say so (405).
            let allowed = Self.allowedMethods(for: request)
            if allowed.isEmpty {
                (status, code, message) = (.notFound, "not_found", "Not found")
            } else {
                (status, code, message) = (.methodNotAllowed, "method_not_allowed", "Use \(allowed.joined(separator: ", ")) on this path")
                headers.replaceOrAdd(name: .allow, value: allowed.joined(separator: ", "))
            }
        case let e as any AbortError where e.status == .unprocessableEntity:
            // Vapor's answer to an empty or undecodable body.
            (status, code, message) = (.badRequest, "invalid_body", "Request body is missing or is not valid JSON")
            headers = e.headers
        case let e as any AbortError:
            status = e.status
            code = Self.code(for: e.status)
            message = e.status == .internalServerError ? "Internal server error" : Self.message(for: e)
            headers = e.headers
        case let e where DatabaseAvailability.isConflict(e):
            (status, code, message) = (.conflict, "conflict", "A concurrent request changed this resource; retry")
        case let e where DatabaseAvailability.isUnavailable(e):
            (status, code, message) = (.serviceUnavailable, "database_unavailable", "The database is unavailable; try again shortly")
            headers.replaceOrAdd(name: .retryAfter, value: "5")
        default:
            request.logger.report(error: error)
            (status, code, message) = (.internalServerError, "internal_error", "Internal server error")
        }
        if status.code >= 500 {
            // The error's own text helps operators; the log handler scrubs credentials and addresses from it.
            request.logger.error("request failed", metadata: ["status": "\(status.code)", "code": "\(code)", "error": "\(String(reflecting: type(of: error)))",
                                                              "detail": "\(String(String(reflecting: error).prefix(500)))"])
        }
        let response = Response(status: status, headers: headers)
        do {
            try response.content.encode(ErrorBody(error: .init(code: code, message: message)), as: .json)
        } catch {
            response.body = .init(string: #"{"success":false,"error":{"code":"internal_error","message":"Internal server error"}}"#)
            response.headers.contentType = .json
        }
        return response
    }

    /// Methods registered for this request's path (":param" and "*"/"**" segments match anything).
    static func allowedMethods(for request: Request) -> [String] {
        let parts = request.url.path.split(separator: "/").map(String.init)
        var methods = Set<String>()
        for route in request.application.routes.all where route.method != request.method {
            let pattern = route.path
            if pattern.last.map({ "\($0)" == "**" }) == true, pattern.count - 1 <= parts.count {
                methods.insert(route.method.rawValue); continue
            }
            guard pattern.count == parts.count else { continue }
            let matches = zip(pattern, parts).allSatisfy { component, part in
                switch component {
                case .constant(let c): c == part
                case .parameter, .anything, .catchall: true
                }
            }
            if matches { methods.insert(route.method.rawValue) }
        }
        if methods.contains("GET") { methods.insert("HEAD") }
        return methods.sorted()
    }

    private static func code(for status: HTTPResponseStatus) -> String {
        switch status {
        case .badRequest: "bad_request"
        case .unauthorized: "unauthorized"
        case .forbidden: "forbidden"
        case .notFound: "not_found"
        case .methodNotAllowed: "method_not_allowed"
        case .payloadTooLarge: "payload_too_large"
        case .unsupportedMediaType: "unsupported_media_type"
        case .tooManyRequests: "rate_limited"
        case .badGateway: "upstream_error"
        default: status.code >= 500 ? "internal_error" : "request_error"
        }
    }

    private static func message(for error: any AbortError) -> String {
        switch error.status {
        case .notFound: "Not found"
        case .payloadTooLarge: "Request body is too large"
        case .unsupportedMediaType: "Send the body as application/json"
        default: error.reason
        }
    }

    /// Names the offending field without echoing client data back.
    private static func describe(_ error: DecodingError) -> String {
        func path(_ ctx: DecodingError.Context) -> String {
            let p = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "body" : String(p.drop { $0 == "." })
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            let parent = path(ctx)
            return "Missing field '\(parent == "body" ? key.stringValue : parent + "." + key.stringValue)'"
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
            return "Field '\(path(ctx))' has the wrong type or is null"
        case .dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "Malformed JSON body" : "Field '\(path(ctx))' is invalid"
        @unknown default:
            return "Invalid request body"
        }
    }
}
