import Foundation

/// Outgoing webhooks to the host platform (issue 20).
struct WebhookSettings: Sendable {
    /// WEBHOOK_ALLOW_PRIVATE_URLS: lifts the SSRF guard and allows plain http (private networks,
    /// tests). Unsafe where tenants can register URLs; on by default only in development.
    var allowPrivateURLs = false
    /// WEBHOOK_SECRET_OVERLAP_HOURS: after a rotation the old secret also signs for this long.
    var secretOverlap: TimeInterval = 24 * 3600
    /// WEBHOOK_DISABLE_AFTER_FAILURES: consecutive failed attempts that disable an endpoint.
    var disableAfterFailures = 15
    /// WEBHOOK_RETRY_HOURS: how long an event is retried before it is given up (dead).
    var retryWindow: TimeInterval = 24 * 3600
    /// WEBHOOK_TIMEOUT_SECONDS: connect + response.
    var timeoutSeconds: Int64 = 10
    /// Deliveries sent at once by one process.
    var concurrency = 8

    static func load(value: (String) -> String?, development: Bool, problems: inout [String]) -> WebhookSettings {
        var s = WebhookSettings()
        s.allowPrivateURLs = (value("WEBHOOK_ALLOW_PRIVATE_URLS") ?? (development ? "true" : "false")).lowercased() == "true"
        func int(_ name: String, _ range: ClosedRange<Int>, _ apply: (Int) -> Void) {
            guard let raw = value(name) else { return }
            if let n = Int(raw), range.contains(n) { apply(n) } else { problems.append("\(name) must be an integer from \(range.lowerBound) to \(range.upperBound)") }
        }
        int("WEBHOOK_SECRET_OVERLAP_HOURS", 0...168) { s.secretOverlap = TimeInterval($0 * 3600) }
        int("WEBHOOK_DISABLE_AFTER_FAILURES", 1...1000) { s.disableAfterFailures = $0 }
        int("WEBHOOK_RETRY_HOURS", 1...168) { s.retryWindow = TimeInterval($0 * 3600) }
        int("WEBHOOK_TIMEOUT_SECONDS", 1...60) { s.timeoutSeconds = Int64($0) }
        return s
    }
}
