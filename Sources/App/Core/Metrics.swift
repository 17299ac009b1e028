import Foundation
import Prometheus
import SQLKit

/// Prometheus metrics of one application instance (its own registry: no process-wide state,
/// so tests can run many apps side by side). Queue gauges are read from the database at scrape.
final class AppMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    static let latencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let latenessBuckets: [Double] = [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900]

    private func d(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: unit, helpText: help)
    }

    /// The registry validates names and labels and looks the series up under its lock on every call;
    /// the counters and histograms this process records into are kept here instead (one per email sent
    /// and per request). Bounded: label values are route patterns, statuses and kinds.
    private struct SeriesKey: Hashable, Sendable { let name: String; let labels: [String] }
    private let counters = BoundedCache<SeriesKey, Counter>(limit: 1_024)
    private let histograms = BoundedCache<SeriesKey, ValueHistogram>(limit: 1_024)

    private func counter(_ name: String, _ unit: String, _ help: String, _ labels: [(String, String)]) -> Counter {
        kept(counters, name, labels) { registry.makeCounter(descriptor: d(name, unit, help), labels: labels) }
    }

    private func histogram(_ name: String, _ unit: String, _ help: String, _ labels: [(String, String)], buckets: [Double]) -> ValueHistogram {
        kept(histograms, name, labels) { registry.makeValueHistogram(descriptor: d(name, unit, help), labels: labels, buckets: buckets) }
    }

    private func kept<M: Sendable>(_ cache: BoundedCache<SeriesKey, M>, _ name: String, _ labels: [(String, String)], make: () -> M) -> M {
        let key = SeriesKey(name: name, labels: labels.flatMap { [$0.0, $0.1] })
        if let known = cache.get(key) { return known }
        let made = make()
        cache.put(key, made)
        return made
    }

    /// `route` is the registered pattern (e.g. /api/streams/:streamId/token), never the raw path.
    func request(method: String, route: String, status: Int, seconds: Double) {
        let labels = [("method", method), ("route", route), ("status", String(status))]
        counter("http_requests", "total", "HTTP requests by route and status", labels).increment()
        histogram("http_request_duration", "seconds", "HTTP request duration by route and status", labels, buckets: Self.latencyBuckets)
            .record(seconds)
    }

    /// One delivery outcome: status sent | retry | failed | skipped.
    func email(kind: String, status: String) {
        counter("emails", "total", "Email deliveries by kind and outcome", [("kind", kind), ("status", status)]).increment()
    }

    enum ExternalSystem: String { case agora, s3, smtp, email }

    /// A failed call to an outside system (transport error or an error answer).
    func externalError(_ system: ExternalSystem) {
        counter("external_call_errors", "total", "Failed calls to Agora, S3, SMTP and the email APIs", [("system", system.rawValue)]).increment()
    }

    /// One webhook delivery attempt to the host platform: delivered | failed.
    func webhook(outcome: String) {
        counter("webhook_deliveries", "total", "Webhook delivery attempts by outcome", [("outcome", outcome)]).increment()
    }

    /// One push attempt: channel apns | fcm, outcome sent | unregistered | retry | failed.
    func push(channel: String, outcome: String) {
        counter("pushes", "total", "Push attempts by channel and outcome", [("channel", channel), ("outcome", outcome)]).increment()
    }

    /// How late a reminder ran after its due time.
    func reminderLateness(seconds: Double) {
        histogram("reminder_lateness", "seconds", "Reminder run time minus due time", [], buckets: Self.latenessBuckets).record(max(0, seconds))
    }

    /// The text exposition, with queue depth and oldest due age read now.
    func render(sql: (any SQLDatabase)?, now: Date) async -> String {
        if let sql {
            for (table, queued) in [(Job.schema, JobStatus.queued.rawValue), (Delivery.schema, DeliveryStatus.queued.rawValue),
                                    (WebhookOutbox.deliveries, WebhookDeliveryStatus.queued.rawValue),
                                    (PushDelivery.schema, PushDelivery.Status.queued.rawValue)] {
                struct Row: Decodable { let depth: Int; let oldest: Date? }
                // The status as a literal: SQLite serves it from the (partial) due index only then.
                let query: SQLQueryString = """
                    SELECT COUNT(*) AS depth, MIN(run_at) AS oldest FROM \(ident: table)
                    WHERE status = \(literal: queued) AND run_at <= \(bind: now)
                    """
                guard let row = try? await sql.raw(query).first(decoding: Row.self) else { continue }
                registry.makeGauge(descriptor: d("queue_depth", "", "Due rows waiting to be claimed"), labels: [("queue", table)])
                    .set(Double(row.depth))
                registry.makeGauge(descriptor: d("queue_oldest_due_age", "seconds", "Age of the oldest due row"), labels: [("queue", table)])
                    .set(row.oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0)
            }
        }
        return registry.emitToString()
    }
}
