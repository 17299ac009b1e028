import Foundation
import Vapor

/// Fixed-window request limits per key, in this process (each replica counts on its own, so the
/// effective limit across N replicas is up to N×; the defaults are far above what a real
/// frontend sends). RATE_LIMIT_ENABLED=false turns them off, e.g. for benchmarks.
final class RateLimiter: @unchecked Sendable {
    private let lock = NSLock()
    private var windows: [String: (start: Date, count: Int)] = [:]
    let clock: AppClock

    init(clock: AppClock) { self.clock = clock }

    /// nil when allowed, else the seconds until the window resets.
    func check(_ key: String, limit: Int, window: TimeInterval = 60) -> Int? {
        let now = clock.now()
        return lock.withLock {
            if windows.count > 50_000 { windows = windows.filter { now.timeIntervalSince($0.value.start) < window } }
            var w = windows[key] ?? (now, 0)
            if now.timeIntervalSince(w.start) >= window { w = (now, 0) }
            guard w.count < limit else { return max(1, Int((window - now.timeIntervalSince(w.start)).rounded(.up))) }
            w.count += 1
            windows[key] = w
            return nil
        }
    }
}

struct RateLimits: Sendable {
    var enabled = true
    var tokenPerMinute = 120
    var notifyPerMinute = 10
    var importPerMinute = 60
    var unsubscribePerMinute = 30

    static func load(value: (String) -> String?, problems: inout [String]) -> RateLimits {
        var r = RateLimits()
        r.enabled = (value("RATE_LIMIT_ENABLED") ?? "true").lowercased() != "false"
        func n(_ key: String, _ current: Int) -> Int {
            guard let raw = value(key) else { return current }
            guard let v = Int(raw), v > 0 else { problems.append("\(key) must be a positive integer"); return current }
            return v
        }
        r.tokenPerMinute = n("RATE_LIMIT_TOKEN_PER_MINUTE", r.tokenPerMinute)
        r.notifyPerMinute = n("RATE_LIMIT_NOTIFY_PER_MINUTE", r.notifyPerMinute)
        r.importPerMinute = n("RATE_LIMIT_IMPORT_PER_MINUTE", r.importPerMinute)
        r.unsubscribePerMinute = n("RATE_LIMIT_UNSUBSCRIBE_PER_MINUTE", r.unsubscribePerMinute)
        return r
    }
}

/// Applies one limit to the routes it guards; `key` picks what is counted (user, stream, IP).
struct RateLimitMiddleware: Middleware {
    let name: String
    let limit: @Sendable (RateLimits) -> Int
    let key: @Sendable (Request) -> String

    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        let limits = request.deps.config.rateLimits
        guard limits.enabled else { return next.respond(to: request) }
        if let retry = request.deps.rateLimiter.check("\(name):\(key(request))", limit: limit(limits)) {
            var error = APIError(.tooManyRequests, "rate_limited", "Too many requests; try again in \(retry) s")
            error.headers.replaceOrAdd(name: .retryAfter, value: String(retry))
            return request.eventLoop.makeFailedFuture(error)
        }
        return next.respond(to: request)
    }

    static let token = RateLimitMiddleware(name: "token", limit: { $0.tokenPerMinute }) { (try? $0.caller.id) ?? "anonymous" }
    // Per caller and stream: a stranger's calls (refused with 403 later) cannot use up the owner's budget.
    static let notify = RateLimitMiddleware(name: "notify", limit: { $0.notifyPerMinute }) {
        "\((try? $0.caller.id) ?? "anonymous"):\($0.parameters.get("streamId") ?? "")"
    }
    static let adminImport = RateLimitMiddleware(name: "import", limit: { $0.importPerMinute }) { _ in "admin" }
    static let unsubscribe = RateLimitMiddleware(name: "unsubscribe", limit: { $0.unsubscribePerMinute }) { ClientAddress.of($0) }

}
