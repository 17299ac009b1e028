import Fluent
import Foundation
import SQLKit

/// A durable unit of background work. `key` is unique: it names the work ("fanout:…",
/// "reminder:{streamId}") so enqueueing the same work twice is a no-op.
final class Job: Model, @unchecked Sendable {
    static let schema = "jobs"

    @ID(custom: "id", generatedBy: .database) var id: Int64?
    @Field(key: "kind") var kind: JobKind
    @Field(key: "key") var key: String
    @Field(key: "payload") var payload: String
    @Field(key: "status") var status: Status
    @Field(key: "run_at") var runAt: Date
    @Field(key: "attempts") var attempts: Int
    @Field(key: "max_attempts") var maxAttempts: Int
    @OptionalField(key: "locked_until") var lockedUntil: Date?
    @OptionalField(key: "locked_by") var lockedBy: String?
    @OptionalField(key: "last_error") var lastError: String?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?

    init() {}

    typealias Status = JobStatus

    func decodePayload<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(payload.utf8))
    }
}

/// What a job does; the worker has one handler per kind.
enum JobKind: String, Codable, Sendable, CaseIterable {
    /// Queue the deliveries of one notice (FanOut).
    case fanout
    /// A stream's automatic reminder falls due (Reminders).
    case reminder
    /// The host left a live stream and has not come back (StreamLifecycle).
    case hostGrace = "host_grace"
    /// Create or delete an Agora kicking rule (KickingRules).
    case kickingRule = "kicking_rule"
    /// Apply email delivery events a provider's webhook reported (EmailEventApplier).
    case emailEvents = "email_events"
    /// The daily top-up of class series' occurrences (issue 19).
    case seriesTopUp = "series_topup"
    /// notification.completed for the host platform's webhooks (issue 20).
    case noticeCompletion = "notice_completion"
}

/// A job's place in the queue: queued → running (leased) → done | skipped, or back to queued
/// with backoff after a failure, dead after its last attempt.
enum JobStatus: String, Codable, Sendable, CaseIterable, QueueStatus {
    case queued, running, done, dead, skipped
    static let active = JobStatus.running
    /// Finished one way or another: `replace: .ifFinished` may queue such a job again.
    static let finished: [JobStatus] = [.done, .dead, .skipped]
}

/// Enqueueing, idempotent by key.
struct JobQueue: Sendable {
    let clock: AppClock
    let wake: @Sendable () -> Void

    enum Replace {
        case never
        /// Re-queue a done/dead job with the same key.
        case ifFinished
        /// Replace whatever is there (a reminder moved by a reschedule).
        case always
    }

    /// Inserts the job unless one with this key exists. With `.ifFinished`, a done/dead job with
    /// the key is queued again. Returns true if this call queued it.
    @discardableResult
    func enqueue<P: Encodable>(kind: JobKind, key: String, payload: P, runAt: Date? = nil, maxAttempts: Int = 8,
                               replace: Replace = .never, on db: any Database) async throws -> Bool {
        let now = clock.now()
        let json = String(decoding: try JSONEncoder().encode(payload), as: UTF8.self)
        let sql = db.sql
        let insert = sql.insert(into: Job.schema)
            .columns("kind", "key", "payload", "status", "run_at", "attempts", "max_attempts", "created_at", "updated_at")
            .values(SQLBind(kind), SQLBind(key), SQLBind(json), SQLBind(JobStatus.queued), SQLBind(runAt ?? now),
                    SQLBind(0), SQLBind(maxAttempts), SQLBind(now), SQLBind(now))
        let rows: [JobIDRow]
        switch replace {
        case .never:
            rows = try await insert.ignoringConflicts(with: ["key"]).returning("id").all(decoding: JobIDRow.self)
        case .ifFinished, .always:
            rows = try await insert.onConflict(with: ["key"]) {
                let update = $0.set(excludedValueOf: "payload").set(excludedValueOf: "run_at").set(excludedValueOf: "updated_at")
                    .set("status", to: SQLBind(JobStatus.queued)).set("attempts", to: 0).set("last_error", to: SQLLiteral.null)
                    .set("locked_by", to: SQLLiteral.null).set("locked_until", to: SQLLiteral.null)
                guard replace == .ifFinished else { return update }
                return update.where(SQLColumn("status", table: Job.schema), .in,
                                    SQLGroupExpression(SQLList(JobStatus.finished.map { SQLBind($0) })))
            }.returning("id").all(decoding: JobIDRow.self)
        }
        // Inside a write transaction, once it has committed (the worker would not see the job before).
        if !rows.isEmpty { AfterCommit.run(after: db, wake) }
        return !rows.isEmpty
    }
}

private struct JobIDRow: Decodable { let id: Int64 }
