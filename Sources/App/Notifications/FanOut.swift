import Fluent
import Foundation
import SQLKit

/// Queues deliveries for a stream notification. Runs as a job so the API call returns at once;
/// inserts in pages of 500 (never every recipient in memory) and idempotently, so a crash or a
/// second run only fills in what is missing. Who is in each page is `Audience`'s rule.
enum FanOut {
    static let jobKind = JobKind.fanout
    static let pageSize = 500
    /// Reschedule notices wait this long after the last edit, so a burst of edits sends one email
    /// per member, with the latest time (at most two minutes after the last edit, with the worker's poll).
    static let rescheduleCoalesceSeconds: TimeInterval = 60

    struct Payload: Codable, Sendable {
        let streamId: String
        let kind: NotificationKind
        let revision: Int
        /// For reschedule notices: the start time members were last told.
        var previousStart: Date? = nil
    }

    static func key(_ p: Payload) -> String {
        // One pending reschedule notice per stream: each edit replaces it (coalescing).
        p.kind == .rescheduled ? "fanout:\(p.streamId):rescheduled" : "fanout:\(p.streamId):\(p.kind.rawValue):\(p.revision)"
    }

    /// Enqueues the fan-out. `again: true` (the notify endpoint) re-runs a finished one so members
    /// who became eligible since are included; automatic triggers never repeat.
    @discardableResult
    static func enqueue(_ p: Payload, again: Bool, queue: JobQueue, on db: any Database) async throws -> Bool {
        try await queue.enqueue(kind: jobKind, key: key(p), payload: p, maxAttempts: 20, replace: again ? .ifFinished : .never, on: db)
    }

    /// The reschedule notice for the stream's current revision, due `rescheduleCoalesceSeconds`
    /// from now. If one is still waiting, it is replaced, and the time it said members were last
    /// told (the start before the first edit of the burst) is kept.
    static func enqueueReschedule(streamID: String, revision: Int, previousStart: Date, queue: JobQueue, on db: any Database) async throws {
        var p = Payload(streamId: streamID, kind: .rescheduled, revision: revision, previousStart: previousStart)
        if let waiting = try await Job.query(on: db).filter(\.$key == key(p)).filter(\.$status == .queued).first(),
           let earlier = try? waiting.decodePayload(Payload.self).previousStart {
            p.previousStart = earlier
        }
        try await queue.enqueue(kind: jobKind, key: key(p), payload: p, runAt: queue.clock.now().addingTimeInterval(rescheduleCoalesceSeconds),
                                maxAttempts: 20, replace: .always, on: db)
    }

    @discardableResult
    static func run(_ job: Job, db: any Database, now: @Sendable () -> Date, wake: @Sendable () -> Void = {},
                    completion queue: JobQueue? = nil, push: Set<PushChannel> = []) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        guard let stream = try await LiveStream.find(p.streamId, on: db), stream.isEligible(for: p.kind) else {
            return .skipped("stream no longer fits a \(p.kind.rawValue) email")
        }
        let creator = try await stream.$creator.get(on: db)
        guard creator.isActiveCreator else { return .skipped("creator no longer active") }
        let sql = db.sql
        var cursor = ""
        while true {
            let page = try await Audience.page(creator: creator.id!, kind: p.kind, stream: p.streamId, seriesOccurrence: stream.seriesID != nil, after: cursor, limit: pageSize, on: sql)
            guard let next = page.next else { break }
            cursor = next
            guard !page.rows.isEmpty else { continue }
            let t = now()
            var insert = sql.insert(into: Delivery.schema)
                .columns("stream_id", "kind", "recipient_id", "revision", "status", "run_at", "attempts", "created_at", "updated_at",
                         "previous_start_time", "last_reply")
            for row in page.rows {
                // Opted-out and suppressed members get a `skipped` row: visible in the counts, never sent.
                let skip: String? = row.suppressed == 1 ? DeliverySender.suppressedReason : (row.opted_out == 1 ? "recipient opted out" : nil)
                insert = insert.values(SQLBind(p.streamId), SQLBind(p.kind), SQLBind(row.uid), SQLBind(p.revision),
                                       SQLBind(skip == nil ? DeliveryStatus.queued : .skipped), SQLBind(t), SQLBind(0), SQLBind(t), SQLBind(t),
                                       SQLBind(p.previousStart), SQLBind(skip))
            }
            try await insert.ignoringConflicts(with: ["stream_id", "kind", "recipient_id", "revision"]).run()
            // The push channel: this page's members' devices (their own push switches).
            try await PushDelivery.enqueue(stream: p.streamId, creator: creator.id!, kind: p.kind, revision: p.revision,
                                           members: page.rows.map(\.uid), enabled: push, now: t, on: sql)
            wake() // this process's worker starts sending the first page while the next ones are inserted
        }
        if let queue {
            try await NoticeCompletion.enqueue(.init(streamId: p.streamId, kind: p.kind, revision: p.revision, round: 0), queue: queue, now: now(), on: db)
        }
        return .done
    }
}

extension StreamState {
    /// Whether an email of `kind` still makes sense for a stream in this state.
    func wants(_ kind: NotificationKind) -> Bool {
        switch kind {
        case .liveNow: self == .live
        case .scheduled, .reminder, .manualReminder, .rescheduled: self == .scheduled
        case .rsvpConfirmed: self == .scheduled || self == .live
        // A series notice is about the series; its anchor occurrence may have started meanwhile.
        case .seriesScheduled, .seriesChanged: self != .ended
        case .seriesEnded: true
        case .cancelled: self == .cancelled
        }
    }
}

extension LiveStream {
    func isEligible(for kind: NotificationKind) -> Bool { state.wants(kind) }
}
