import Vapor

/// Outermost middleware: a request id (the caller's `X-Request-ID` when it is sane, else a new
/// one) on the logger and the response, one access-log line, and the HTTP metrics. Logs the
/// route pattern, never the raw path or query: paths carry unsubscribe tokens and queries ids.
struct RequestLogMiddleware: Middleware {
    static let header = HTTPHeaders.Name("X-Request-ID")

    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        let started = ContinuousClock.now
        let id = Self.acceptable(request.headers.first(name: Self.header)) ?? RandomID.uuid().uuidString
        request.logger[metadataKey: "request-id"] = .string(id)
        let inFlight = request.deps.inFlight
        inFlight.enter()
        // JSONErrorMiddleware sits inside this one; anything reaching here is still answered in shape.
        return next.respond(to: request).flatMapError { error in
            request.eventLoop.makeSucceededFuture(JSONErrorMiddleware.response(for: error, request: request))
        }.map { response in
            defer { inFlight.leave() }
            return Self.finish(request, response, id: id, started: started)
        }
    }

    private static func finish(_ request: Request, _ response: Response, id: String, started: ContinuousClock.Instant) -> Response {
        response.headers.replaceOrAdd(name: Self.header, value: id)
        let elapsed = started.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let route = routeLabel(request)
        request.deps.metrics.request(method: request.method.rawValue, route: route, status: Int(response.status.code), seconds: seconds)
        request.logger.info("request", metadata: [
            "method": .string(request.method.rawValue), "route": .string(route),
            "status": .stringConvertible(response.status.code), "ms": .string(String(format: "%.2f", seconds * 1000)),
        ])
        return response
    }

    /// Up to 128 characters of [A-Za-z0-9._-]; anything else is replaced (log injection, size).
    static func acceptable(_ raw: String?) -> String? {
        guard let raw, !raw.isEmpty, raw.utf8.count <= 128,
              raw.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 46 || $0 == 95 })
        else { return nil }
        return raw
    }

    /// "/api/streams/:streamId/token"; "unmatched" for paths no route has (bounded label set).
    static func routeLabel(_ request: Request) -> String {
        guard let route = request.route else { return "unmatched" }
        return "/" + route.path.map { $0.description }.joined(separator: "/")
    }
}
