import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SQLKit
import Vapor

/// Delivers the outbox to the host platform's endpoints: claims due deliveries under a lease (a
/// crashed process's rows are taken over when the lease expires, so nothing is lost; what was in
/// flight may arrive twice, with the same `webhook-id`), signs and POSTs each, and records the
/// outcome. 2xx = delivered; 410 = the endpoint is disabled; anything else (and timeouts) is
/// retried with exponential backoff and jitter until the event is `retryWindow` old; after
/// `disableAfterFailures` consecutive failed attempts the endpoint is disabled (circuit breaker;
/// its deliveries wait until it is enabled again). Per endpoint, a stream's events go out in
/// order: a delivery is not claimed while an earlier one of the same stream is still pending.
final class WebhookDispatcher: Sendable {
    let sql: any SQLDatabase
    let clock: AppClock
    let client: HTTPClient
    let settings: WebhookSettings
    let logger: Logger
    let metrics: AppMetrics
    let lease: Lease<WebhookDeliveryStatus>
    let backoff = Backoff(base: 5, cap: 3600)

    init(sql: any SQLDatabase, clock: AppClock, client: HTTPClient, settings: WebhookSettings, logger: Logger, metrics: AppMetrics) {
        self.sql = sql
        self.clock = clock
        self.client = client
        self.settings = settings
        self.logger = logger
        self.metrics = metrics
        lease = Lease(table: WebhookOutbox.deliveries, workerID: "webhooks:\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))",
                      duration: TimeInterval(settings.timeoutSeconds * 3 + 30))
    }

    /// The loop (inside the worker): a pass, then a short sleep when there was nothing to send.
    func run(isStopping: @escaping @Sendable () -> Bool) async {
        while !isStopping() && !Task.isCancelled {
            let sent: Int
            do { sent = try await pass() } catch {
                logger.error("webhook pass failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
                sent = 0
            }
            if sent == 0 { try? await Task.sleep(for: .milliseconds(500)) }
        }
    }

    /// Tests: sends everything due now (including retries that fall due as the clock moves).
    func drain(maxPasses: Int = 100) async throws {
        for _ in 0..<maxPasses {
            guard try await pass() > 0 else { return }
        }
    }

    /// Claims up to `concurrency` due deliveries and sends them concurrently. Returns how many.
    @discardableResult
    func pass() async throws -> Int {
        let claimed = try await claim(limit: settings.concurrency, now: clock.now())
        guard !claimed.isEmpty else { return 0 }
        let rows = try await load(claimed.map(\.id))
        await withTaskGroup(of: Void.self) { group in
            for row in rows { group.addTask { await self.deliver(row) } }
        }
        return rows.count
    }

    private func claim(limit: Int, now: Date) async throws -> [ClaimedRow] {
        let skipLocked = sql.dialect.name == "postgresql" ? " FOR UPDATE OF d SKIP LOCKED" : ""
        let queued = WebhookDeliveryStatus.queued.rawValue, sending = WebhookDeliveryStatus.sending.rawValue
        return try await sql.raw("""
            UPDATE webhook_deliveries SET status = \(bind: sending), locked_by = \(bind: lease.workerID),
              locked_until = \(bind: now.addingTimeInterval(lease.duration)), attempts = attempts + 1, updated_at = \(bind: now)
            WHERE id IN (
              SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id AND w.enabled = \(bind: true)
              WHERE ((d.status = \(bind: queued) AND d.run_at <= \(bind: now)) OR (d.status = \(bind: sending) AND d.locked_until < \(bind: now)))
                AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = d.endpoint_id AND p.order_key = d.order_key
                                AND p.event_id < d.event_id AND p.status IN (\(bind: queued), \(bind: sending)))
              ORDER BY d.event_id LIMIT \(literal: limit)\(unsafeRaw: skipLocked)
            )
            RETURNING id, attempts
            """).all(decoding: ClaimedRow.self)
    }

    struct Row: Decodable, Sendable {
        let id: Int64
        let attempts: Int
        let endpoint_id: String
        let url: String
        let secret: String
        let previous_secret: String?
        let previous_secret_until: Date?
        let message_id: String
        let body: String
        let event_created_at: Date
    }

    private func load(_ ids: [Int64]) async throws -> [Row] {
        try await sql.raw("""
            SELECT d.id, d.attempts, d.endpoint_id, w.url, w.secret, w.previous_secret, w.previous_secret_until,
                   ev.message_id, ev.body, ev.created_at AS event_created_at
            FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id JOIN webhook_events ev ON ev.id = d.event_id
            WHERE d.id IN (\(SQLList(ids.map { SQLBind($0) })))
            ORDER BY d.event_id
            """).all(decoding: Row.self)
    }

    enum Outcome: Sendable, Equatable {
        case delivered(Int)
        case gone
        case failed(code: Int?, reason: String)
    }

    private func deliver(_ row: Row) async {
        let outcome = await send(row)
        do { try await record(outcome, for: row) } catch {
            logger.error("webhook bookkeeping failed; the lease expires and it is sent again",
                         metadata: ["delivery": "\(row.id)", "error": "\(String(reflecting: type(of: error)))"])
        }
    }

    /// One signed POST, redirects not followed, bounded by the timeout.
    func send(_ row: Row) async -> Outcome {
        let now = clock.now()
        let host: String
        do {
            let url = try URLGuard.parse(row.url, allowHTTP: settings.allowPrivateURLs)
            host = url.host ?? ""
            if !settings.allowPrivateURLs { try URLGuard.checkResolved(host: host) }
        } catch {
            return .failed(code: nil, reason: "refused: \(error)")
        }
        let timestamp = Int(now.timeIntervalSince1970)
        var secrets = [row.secret]
        if let previous = row.previous_secret, let until = row.previous_secret_until, until > now { secrets.append(previous) }
        let body = Array(row.body.utf8)
        var request = HTTPClientRequest(url: row.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "livestream-webhooks/1")
        request.headers.add(name: "webhook-id", value: row.message_id)
        request.headers.add(name: "webhook-timestamp", value: String(timestamp))
        request.headers.add(name: "webhook-signature", value: WebhookSigner.header(id: row.message_id, timestamp: timestamp, body: body, secrets: secrets))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await client.execute(request, timeout: .seconds(settings.timeoutSeconds))
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            metrics.webhook(outcome: (200..<300).contains(code) ? "delivered" : "failed")
            if (200..<300).contains(code) { return .delivered(code) }
            if code == 410 { return .gone }
            return .failed(code: code, reason: "HTTP \(code)")
        } catch {
            metrics.webhook(outcome: "failed")
            return .failed(code: nil, reason: String(describing: error).prefix(200).description)
        }
    }

    private func record(_ outcome: Outcome, for row: Row) async throws {
        let now = clock.now()
        switch outcome {
        case .delivered(let code):
            try await lease.ending(sql.update(WebhookOutbox.deliveries), status: .delivered, now: now)
                .set("last_status_code", to: SQLBind(code)).set("last_error", to: SQLLiteral.null).set("delivered_at", to: SQLBind(now))
                .where("id", .equal, SQLBind(row.id)).where("locked_by", .equal, SQLBind(lease.workerID)).run()
            try await sql.update(WebhookOutbox.endpoints).set("consecutive_failures", to: SQLBind(0))
                .where("id", .equal, SQLBind(row.endpoint_id)).run()
        case .gone:
            try await lease.ending(sql.update(WebhookOutbox.deliveries), status: .dead, now: now)
                .set("last_status_code", to: SQLBind(410)).set("last_error", to: SQLBind("410 Gone: endpoint disabled"))
                .where("id", .equal, SQLBind(row.id)).where("locked_by", .equal, SQLBind(lease.workerID)).run()
            try await disable(row.endpoint_id, reason: "the endpoint answered 410 Gone", now: now)
        case .failed(let code, let reason):
            let givingUp = now.timeIntervalSince(row.event_created_at) >= settings.retryWindow
            var update = lease.ending(sql.update(WebhookOutbox.deliveries), status: givingUp ? .dead : .queued, now: now)
                .set("last_status_code", to: SQLBind(code)).set("last_error", to: SQLBind(String(reason.prefix(300))))
            if !givingUp { update = update.set("run_at", to: SQLBind(now.addingTimeInterval(backoff.delay(afterAttempt: row.attempts)))) }
            try await update.where("id", .equal, SQLBind(row.id)).where("locked_by", .equal, SQLBind(lease.workerID)).run()
            struct Failures: Decodable { let consecutive_failures: Int }
            let failures = try await sql.update(WebhookOutbox.endpoints).set("consecutive_failures", to: SQLRaw("consecutive_failures + 1"))
                .where("id", .equal, SQLBind(row.endpoint_id)).returning("consecutive_failures").first(decoding: Failures.self)?.consecutive_failures ?? 0
            if failures >= settings.disableAfterFailures {
                try await disable(row.endpoint_id, reason: "\(failures) consecutive failed deliveries (last: \(reason.prefix(120)))", now: now)
            }
        }
    }

    private func disable(_ endpoint: String, reason: String, now: Date) async throws {
        try await sql.update(WebhookOutbox.endpoints).set("enabled", to: SQLBind(false)).set("disabled_reason", to: SQLBind(reason))
            .set("disabled_at", to: SQLBind(now)).set("updated_at", to: SQLBind(now))
            .where("id", .equal, SQLBind(endpoint)).where("enabled", .equal, SQLBind(true)).run()
        logger.warning("webhook endpoint disabled", metadata: ["endpoint": "\(endpoint)", "reason": "\(reason.prefix(120))"])
    }
}

/// Shuts an HTTP client down with the application (after the handlers registered later).
struct HTTPClientShutdown: LifecycleHandler {
    let client: HTTPClient
    func shutdownAsync(_ application: Application) async {
        try? await client.shutdown()
    }
}
