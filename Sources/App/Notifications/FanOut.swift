import Fluent
import Foundation
import SQLKit

/// Queues deliveries for a stream notification. Runs as a job so the API call returns at once;
/// inserts in pages of 500 (never every recipient in memory) and idempotently, so a crash or a
/// second run only fills in what is missing.
enum FanOut {
    static let jobKind = "fanout"
    static let pageSize = 500

    struct Payload: Codable, Sendable {
        let streamId: String
        let kind: NotificationKind
        let revision: Int
        /// For reschedule notices: the start time being replaced.
        var previousStart: Date? = nil
    }

    static func key(_ p: Payload) -> String { "fanout:\(p.streamId):\(p.kind.rawValue):\(p.revision)" }

    /// Enqueues the fan-out. `again: true` (the notify endpoint) re-runs a finished one so members
    /// who became eligible since are included; automatic triggers never repeat.
    @discardableResult
    static func enqueue(_ p: Payload, again: Bool, queue: JobQueue, on db: any Database) async throws -> Bool {
        try await queue.enqueue(kind: jobKind, key: key(p), payload: p, maxAttempts: 20, replace: again ? .ifFinished : .never, on: db)
    }

    @discardableResult
    static func run(_ job: Job, db: any Database, now: @Sendable () -> Date, wake: @Sendable () -> Void = {}) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        guard let stream = try await LiveStream.find(p.streamId, on: db), stream.isEligible(for: p.kind) else {
            return .skipped("stream no longer fits a \(p.kind.rawValue) email")
        }
        let creator = stream.$creator.id
        let sql = db as! any SQLDatabase
        var cursor = ""
        while true {
            let page = try await Recipients.page(creator: creator, kind: p.kind, stream: p.streamId, after: cursor, limit: pageSize, on: sql)
            guard let next = page.next else { break }
            cursor = next
            guard !page.rows.isEmpty else { continue }
            let t = now()
            var insert = sql.insert(into: Delivery.schema)
                .columns("stream_id", "kind", "recipient_id", "revision", "status", "run_at", "attempts", "created_at", "updated_at", "previous_start_time")
            for row in page.rows {
                // Opted-out members get a `skipped` row: visible in the counts, never sent.
                let status = row.opted_out == 1 ? Delivery.Status.skipped : Delivery.Status.queued
                insert = insert.values(SQLBind(p.streamId), SQLBind(p.kind.rawValue), SQLBind(row.uid), SQLBind(p.revision),
                                       SQLBind(status), SQLBind(t), SQLBind(0), SQLBind(t), SQLBind(t), SQLBind(p.previousStart))
            }
            try await insert.ignoringConflicts(with: ["stream_id", "kind", "recipient_id", "revision"]).run()
            wake() // this process's worker starts sending the first page while the next ones are inserted
        }
        return .done
    }
}

extension LiveStream {
    /// Whether an email of `kind` still makes sense for this stream.
    func isEligible(for kind: NotificationKind) -> Bool {
        switch kind {
        case .liveNow: isLive && !isCancelled
        case .scheduled, .reminder, .rescheduled: isUpcoming
        case .cancelled: isCancelled
        }
    }
}
