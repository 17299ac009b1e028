import Foundation
import Logging
import SQLKit
import AsyncHTTPClient
import NIOSSL
import Vapor

/// Sends queued push deliveries through APNs or FCM (inside the worker, its own loop): claims
/// under a lease (a killed process's pushes are taken over, duplicates bounded by what was in
/// flight), re-checks the stream at send time, removes devices whose token is dead, retries
/// 429/5xx with backoff (FCM's Retry-After honoured), records each outcome.
final class PushSender: Sendable {
    let sql: any SQLDatabase
    let clock: AppClock
    let apns: (any PushProvider)?
    let fcm: (any PushProvider)?
    let templates: EmailTemplates
    let frontendURL: String
    let deepLinkTemplate: String?
    let concurrency: Int
    let logger: Logger
    let metrics: AppMetrics
    let lease: Lease<PushDelivery.Status>
    let backoff = Backoff(base: 5, cap: 1800)
    static let maxAttempts = 8

    init(sql: any SQLDatabase, clock: AppClock, apns: (any PushProvider)?, fcm: (any PushProvider)?, templates: EmailTemplates,
         frontendURL: String, deepLinkTemplate: String?, concurrency: Int, logger: Logger, metrics: AppMetrics) {
        self.sql = sql
        self.clock = clock
        self.apns = apns
        self.fcm = fcm
        self.templates = templates
        self.frontendURL = frontendURL
        self.deepLinkTemplate = deepLinkTemplate
        self.concurrency = concurrency
        self.logger = logger
        self.metrics = metrics
        lease = Lease(table: PushDelivery.schema, workerID: "push:\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))", duration: 60)
    }

    /// The channels with credentials (fan-out queues the others as skipped).
    var enabled: Set<PushChannel> { Set([apns == nil ? nil : PushChannel.apns, fcm == nil ? nil : .fcm].compactMap { $0 }) }

    func run(isStopping: @escaping @Sendable () -> Bool) async {
        await pump(stopWhenIdle: false, isStopping: isStopping)
    }

    /// Tests and benchmarks: sends everything due now, then returns.
    func drain() async throws {
        await pump(stopWhenIdle: true, isStopping: { false })
    }

    /// Keeps up to `concurrency` pushes in flight: claims more as soon as a quarter of the
    /// window is free (no waiting for the slowest push of a batch; HTTP/2 multiplexes them).
    private func pump(stopWhenIdle: Bool, isStopping: @escaping @Sendable () -> Bool) async {
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            while !Task.isCancelled {
                let stopping = isStopping()
                let room = concurrency - inFlight
                var claimed = 0
                if !stopping, room >= max(1, concurrency / 4) {
                    do {
                        let rows = try await claimAndLoad(limit: room)
                        claimed = rows.count
                        for row in rows { group.addTask { await self.process(row) } }
                        inFlight += rows.count
                    } catch {
                        logger.error("push claim failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
                    }
                }
                if inFlight > 0, claimed == 0 || inFlight >= concurrency - concurrency / 4 {
                    await group.next()
                    inFlight -= 1
                } else if inFlight == 0, claimed == 0 {
                    if stopping || stopWhenIdle { return }
                    try? await Task.sleep(for: .milliseconds(250))
                }
            }
        }
    }

    struct Row: Decodable, Sendable {
        let id: Int64
        let attempts: Int
        let kind: NotificationKind
        let channel: String
        let stream_id: String
        let device_id: UUID
        let token: String?
        let title: String
        let start_time: Date
        let duration_minutes: Int?
        let is_live: Bool
        let went_live_at: Date?
        let end_time: Date?
        let cancelled_at: Date?
        let creator_name: String
        let creator_active: Bool
        let creator_role: UserRole
    }

    private func claimAndLoad(limit: Int) async throws -> [Row] {
        let now = clock.now()
        let claimed = try await lease.claim(limit: limit, now: now, on: sql)
        guard !claimed.isEmpty else { return [] }
        return try await sql.raw("""
            SELECT p.id, p.attempts, p.kind, p.channel, p.stream_id, p.device_id, d.token, s.title, s.start_time, s.duration_minutes,
                   s.is_live, s.went_live_at, s.end_time, s.cancelled_at, c.name AS creator_name, c.is_active AS creator_active, c.role AS creator_role
            FROM push_deliveries p JOIN streams s ON s.id = p.stream_id JOIN users c ON c.id = s.creator_id
            LEFT JOIN devices d ON d.id = p.device_id
            WHERE p.id IN (\(SQLList(claimed.map { SQLBind($0.id) })))
            """).all(decoding: Row.self)
    }

    private func process(_ row: Row) async {
        let outcome: PushOutcome
        if let reason = skipReason(row) {
            do { try await finish(row, .skipped, reply: reason) } catch { logBookkeeping(row, error) }
            return
        }
        let provider = row.channel == PushChannel.apns.rawValue ? apns : fcm
        guard let provider, let token = row.token else { return }
        outcome = await provider.send(message(row, token: token))
        metrics.push(channel: row.channel, outcome: Self.label(outcome))
        do {
            switch outcome {
            case .sent: try await finish(row, .sent, reply: "ok", sentAt: clock.now())
            case .unregistered(let reason):
                try await sql.raw("DELETE FROM devices WHERE id = \(bind: row.device_id)").run()
                try await finish(row, .failed, reply: reason + "; device removed")
            case .failed(let reason): try await finish(row, .failed, reply: reason)
            case .retry(let reason, let after):
                if row.attempts >= Self.maxAttempts {
                    try await finish(row, .failed, reply: "gave up after \(row.attempts) attempts: \(reason)")
                } else {
                    let now = clock.now()
                    let delay = max(backoff.delay(afterAttempt: row.attempts), after ?? 0)
                    try await lease.finish(row.id, status: .queued, note: ("last_reply", reason), retryAt: now.addingTimeInterval(delay), now: now, on: sql)
                }
            }
        } catch { logBookkeeping(row, error) }
    }

    private func logBookkeeping(_ row: Row, _ error: any Error) {
        logger.error("push bookkeeping failed; the lease expires and it is tried again",
                     metadata: ["push": "\(row.id)", "error": "\(String(reflecting: type(of: error)))"])
    }

    static func label(_ o: PushOutcome) -> String {
        switch o {
        case .sent: "sent"
        case .unregistered: "unregistered"
        case .retry: "retry"
        case .failed: "failed"
        }
    }

    private func skipReason(_ row: Row) -> String? {
        guard User.isActiveCreator(role: row.creator_role, isActive: row.creator_active) else { return "creator no longer active" }
        guard row.token != nil else { return "device removed" }
        let state = StreamState(isLive: row.is_live, wentLiveAt: row.went_live_at, endTime: row.end_time, cancelledAt: row.cancelled_at)
        guard state.wants(row.kind) else { return "stream no longer \(row.kind == .liveNow ? "live" : "upcoming")" }
        return nil
    }

    private func finish(_ row: Row, _ status: PushDelivery.Status, reply: String, sentAt: Date? = nil) async throws {
        let now = clock.now()
        var update = lease.ending(sql.update(PushDelivery.schema), status: status, now: now).set("last_reply", to: SQLBind(String(reply.prefix(300))))
        if let sentAt { update = update.set("sent_at", to: SQLBind(sentAt)) }
        try await update.where("id", .equal, SQLBind(row.id)).where("locked_by", .equal, SQLBind(lease.workerID)).run()
    }

    /// The text is the email's subject line (same templates), the body the class's title.
    func message(_ row: Row, token: String) -> PushMessage {
        let now = clock.now()
        let title: String
        if let prepared = templates.prepare(kind: row.kind.template, shared: ["creatorName": row.creator_name, "title": row.title]) {
            title = EmailTemplates.fill(prepared.subject, [
                "startsIn": row.kind.isReminder ? ReminderWording.startsIn(row.start_time, now: now, zoneID: "UTC") : nil,
            ], escape: false)
        } else {
            title = row.title
        }
        let link = (deepLinkTemplate ?? "\(frontendURL)/live/{streamId}").replacingOccurrences(of: "{streamId}", with: row.stream_id)
        let end = row.start_time.addingTimeInterval(TimeInterval((row.duration_minutes ?? 60) * 60))
        let expiration: Date = switch row.kind {
        case .liveNow: max(end, now.addingTimeInterval(300))          // worthless once the class is over
        case .reminder, .manualReminder: max(row.start_time, now.addingTimeInterval(60))
        default: now.addingTimeInterval(86_400)
        }
        return PushMessage(token: token, title: title, body: row.title, deepLink: link, streamID: row.stream_id, kind: row.kind,
                           collapseID: "\(row.stream_id):\(row.kind.rawValue)", expiration: expiration, urgent: row.kind == .liveNow)
    }
}

/// The push sender with the channels that are configured: its own HTTP client (HTTP/2 where the
/// server offers it, PUSH_CA_FILE trusted in addition to the system roots).
func makePushSender(_ config: AppConfig, app: Application, clock: AppClock, templates: EmailTemplates, metrics: AppMetrics) throws -> PushSender {
    var tls = TLSConfiguration.makeClientConfiguration()
    if let ca = config.push.caFile { tls.additionalTrustRoots = [.file(ca)] }
    var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                                 timeout: .init(connect: .seconds(10), read: .seconds(10)))
    configuration.httpVersion = .automatic
    let client = HTTPClient(eventLoopGroupProvider: .shared(app.eventLoopGroup), configuration: configuration)
    app.lifecycle.use(HTTPClientShutdown(client: client))
    let apns = try config.push.apns.map { try APNsClient(settings: $0, client: client, clock: clock) }
    let fcm = try config.push.fcm.map { try FCMClient(settings: $0, client: client, clock: clock) }
    return PushSender(sql: app.db.sql, clock: clock, apns: apns, fcm: fcm, templates: templates,
                      frontendURL: config.frontendURL ?? config.mail.frontendURL, deepLinkTemplate: config.push.deepLinkTemplate,
                      concurrency: config.push.concurrency, logger: app.logger, metrics: metrics)
}
