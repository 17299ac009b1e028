import Foundation
import SQLKit

/// Keeps the tables that only grow bounded, from the worker loop (any replica; deletes are
/// idempotent, in batches so no statement holds a lock for long):
/// - `webhook_notices` (Agora notice ids kept for dedupe): 7 days — Agora retries a notice for
///   minutes, never days;
/// - finished jobs: done/skipped after 7 days, dead after 30 (an operator may want to see why);
///   a job's key only dedupes while it is pending, and emails are deduped by the deliveries'
///   UNIQUE (stream, kind, recipient, revision), which is never pruned;
/// - `outbox_messages` (rendered bodies, EMAIL_TRANSPORT=outbox): 7 days.
struct Housekeeping: Sendable {
    static let noticeRetention: TimeInterval = 7 * 86_400
    static let jobRetention: TimeInterval = 7 * 86_400
    static let deadJobRetention: TimeInterval = 30 * 86_400
    static let outboxRetention: TimeInterval = 7 * 86_400
    /// How often the worker runs it.
    static let interval: TimeInterval = 600
    static let batch = 1000

    struct Result: Sendable, Equatable { var notices = 0, jobs = 0, outbox = 0, webhooks = 0 }
    static let webhookEventRetention: TimeInterval = 30 * 86_400

    /// One pass: deletes everything past its retention (batch by batch). Returns the counts.
    @discardableResult
    static func run(on sql: any SQLDatabase, now: Date) async throws -> Result {
        var result = Result()
        result.notices = try await prune(sql, table: "webhook_notices", key: "notice_id",
                                         where: "received_at < \(bind: now.addingTimeInterval(-noticeRetention))")
        result.jobs = try await prune(sql, table: Job.schema, key: "id", where: """
            (status IN (\(bind: JobStatus.done.rawValue), \(bind: JobStatus.skipped.rawValue)) AND run_at < \(bind: now.addingTimeInterval(-jobRetention)))
            OR (status = \(bind: JobStatus.dead.rawValue) AND run_at < \(bind: now.addingTimeInterval(-deadJobRetention)))
            """)
        result.outbox = try await prune(sql, table: "outbox_messages", key: "id",
                                        where: "created_at < \(bind: now.addingTimeInterval(-outboxRetention))")
        // Host-platform webhooks: deliveries done with after 7 days, events (replayable, pollable) after 30.
        result.webhooks = try await prune(sql, table: WebhookOutbox.deliveries, key: "id", where: """
            status IN (\(bind: WebhookDeliveryStatus.delivered.rawValue), \(bind: WebhookDeliveryStatus.dead.rawValue))
            AND updated_at < \(bind: now.addingTimeInterval(-jobRetention))
            """)
        result.webhooks += try await prune(sql, table: WebhookOutbox.events, key: "id", where: """
            created_at < \(bind: now.addingTimeInterval(-webhookEventRetention))
            AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)
            """)
        return result
    }

    private static func prune(_ sql: any SQLDatabase, table: String, key: String, where condition: SQLQueryString) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await sql.raw("""
                DELETE FROM \(ident: table) WHERE \(ident: key) IN (SELECT \(ident: key) FROM \(ident: table) WHERE \(condition) LIMIT \(unsafeRaw: String(batch))) RETURNING 1 AS one
                """).all()
            total += deleted.count
            if deleted.count < batch { return total }
        }
    }
}
