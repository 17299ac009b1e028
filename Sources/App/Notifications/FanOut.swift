import Fluent
import Foundation
import PostgresNIO
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

    /// How long a page waits for room in this process's local send queue before it is queued for any worker.
    static let localRoomWait: Duration = .seconds(2)

    /// `local`: this process's worker; while it keeps up, pages go to it with no rows written yet
    /// (sent from memory, each email's outcome its row's one write — see `LocalDeliveries`), and the
    /// run ends once they are all recorded. Reminders always go through the queue (their send-time
    /// check looks at other reminders sent meanwhile). `lease`: the job's, checked (and extended) before
    /// every page and while the run waits for its emails — a run that lost it (another worker took the
    /// job over) hands out nothing more and takes back what the worker has not started.
    @discardableResult
    static func run(_ job: Job, db: any Database, now: @Sendable () -> Date, wake: @Sendable () -> Void = {},
                    completion queue: JobQueue? = nil, push: Set<PushChannel> = [], local: LocalDeliveries? = nil,
                    lease: Lease<JobStatus>? = nil) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        guard let stream = try await LiveStream.find(p.streamId, on: db), stream.isEligible(for: p.kind) else {
            return .skipped("stream no longer fits a \(p.kind.rawValue) email")
        }
        let creator = try await stream.$creator.get(on: db)
        guard creator.isActiveCreator else { return .skipped("creator no longer active") }
        let sql = db.sql
        var cursor = ""
        let worker = local
        var local = p.kind.isReminder ? nil : local
        var stopped = false
        let notice = local == nil ? nil : try await DeliverySender.Notice.load([p.streamId], on: sql)[p.streamId]
        let handover = notice == nil ? nil : LocalDeliveries.Handover()
        func holdsLease() async throws -> Bool {
            guard let lease, let id = job.id else { return true }
            return try await lease.renew([id], now: now(), on: sql).contains(id)
        }
        func handOutPages() async throws {
            while true {
                // The worker is stopping: the rest waits for the next run of this job (on any worker).
                if worker?.isClosed == true {
                    stopped = true
                    return
                }
                guard try await holdsLease() else { throw LostLease() }
                let page = try await Audience.page(creator: creator.id!, kind: p.kind, stream: p.streamId, seriesOccurrence: stream.seriesID != nil,
                                                   after: cursor, limit: pageSize, recordedRevision: p.revision, on: sql)
                guard let next = page.next else { break }
                cursor = next
                guard !page.rows.isEmpty else { continue }
                // Members this notice already has a row for (an earlier run of this job) are done.
                let rows = page.rows.filter { $0.recorded == 0 }
                // This page goes to the local worker when it has room (else, from now on, to the queue).
                if let l = local, handover != nil, !rows.isEmpty {
                    if await !l.waitForRoom(rows.count, timeout: localRoomWait) { local = nil }
                }
                let t = now()
                // Opted-out and suppressed members get a `skipped` row: visible in the counts, never sent.
                let members = rows.map { row in
                    (row.uid, row.suppressed == 1 ? DeliverySender.suppressedReason : (row.opted_out == 1 ? "recipient opted out" : nil))
                }
                let insert = { (members: [(id: String, skip: String?)]) in
                    PageInsert(streamID: p.streamId, kind: p.kind, revision: p.revision, previousStart: p.previousStart, now: t, members: members)
                }
                if let local, let notice, let handover {
                    try await insert(members.filter { $0.1 != nil }).run(on: sql)
                    let send = rows.filter { $0.suppressed == 0 && $0.opted_out == 0 }
                    let ids = try await DeliveryIDs.reserve(send.count, on: db)
                    local.add(zip(send, ids).map { m, id in
                        DeliverySender.Row(recipient: .init(
                            id: id, kind: p.kind, attempts: 1, stream_id: p.streamId, recipient_id: m.uid, recipient_name: m.name,
                            recipient_email: m.email, recipient_tz: m.timezone, recipient_active: true, recipient_uid: m.agora_uid,
                            in_audience: 1, opted_out: 0, suppressed: 0, reminded_recently: 0, revision: p.revision,
                            previous_start_time: p.previousStart), shared: notice, handover: handover)
                    }, for: handover)
                } else {
                    try await insert(members).run(on: sql)
                }
                // The push channel: this page's members' devices (their own push switches).
                try await PushDelivery.enqueue(stream: p.streamId, creator: creator.id!, kind: p.kind, revision: p.revision,
                                               members: page.rows.map(\.uid), enabled: push, now: t, on: sql)
                wake() // this process's worker starts sending the first page while the next ones are read
            }
        }
        do {
            try await handOutPages()
        } catch {
            if error is LostLease, let handover { worker?.withdraw(handover) }
            // Not before the emails already handed over are recorded: a retry must not hand them out again.
            _ = await handover?.settled()
            throw error
        }
        // The job holds its lease until every email handed over has its row: if this process dies
        // first, the job runs again and sends what has none.
        var settled: LocalDeliveries.Handover.Outcome?
        while let handover, settled == nil {
            settled = await handover.settled(timeout: .seconds(2))
            if settled == nil, try await !holdsLease() {
                worker?.withdraw(handover)
                _ = await handover.settled()
                throw LostLease()
            }
        }
        switch settled {
        case .unrecorded(stopping: true)?: return .requeue("the worker stopped with emails of this notice not sent")
        case .unrecorded(stopping: false)?: throw UnrecordedEmails()
        case .recorded?, nil: if stopped { return .requeue("the worker stopped before the notice's last page") }
        }
        if let queue {
            try await NoticeCompletion.enqueue(.init(streamId: p.streamId, kind: p.kind, revision: p.revision, round: 0), queue: queue, now: now(), on: db)
        }
        return .done
    }

    /// Some emails handed to this process's worker could not be recorded: the job runs again (with backoff).
    struct UnrecordedEmails: Error {}
    /// Another worker took the job over (this one's lease expired): this run stops.
    struct LostLease: Error {}
}

/// One page of a fan-out's deliveries, inserted idempotently (`ON CONFLICT DO NOTHING` on the once
/// key): a member's row is `skipped` with its reason, or queued for any worker. Per row only the
/// member and the skip reason vary.
struct PageInsert: Sendable {
    let streamID: String
    let kind: NotificationKind
    let revision: Int
    let previousStart: Date?
    let now: Date
    /// Member id and, for one who must not get it, why.
    let members: [(id: String, skip: String?)]

    func run(on sql: any SQLDatabase) async throws {
        guard !members.isEmpty else { return }
        if let pg = sql.postgres {
            _ = try await pg.all(Statement(self), prepared: true, logger: sql.logger)
            return
        }
        // SQLite: one statement per page, the page's values bound once, per row the member and the reason.
        var rowsSQL: SQLQueryString = ""
        for (i, m) in members.enumerated() {
            rowsSQL += i == 0 ? "(\(bind: m.id), " : ", (\(bind: m.id), "
            rowsSQL += m.skip.map { "\(bind: $0))" } ?? "NULL)"
        }
        let previous: SQLQueryString = previousStart.map { "\(bind: $0)" } ?? "NULL"
        try await sql.raw("""
            INSERT INTO \(ident: Delivery.schema) (stream_id, kind, recipient_id, revision, run_at, created_at, updated_at,
              previous_start_time, last_reply, status, attempts)
            SELECT \(bind: streamID), \(bind: kind), v.column1, \(bind: revision), \(bind: now), \(bind: now), \(bind: now),
              \(previous), v.column2, CASE WHEN v.column2 IS NULL THEN \(bind: DeliveryStatus.queued) ELSE \(bind: DeliveryStatus.skipped) END, 0
            FROM (VALUES \(rowsSQL)) AS v
            WHERE true
            ON CONFLICT (stream_id, kind, recipient_id, revision) DO NOTHING
            """).run()
    }

    /// PostgreSQL: the same insert as one prepared statement for every page (members as arrays;
    /// an empty reason stands for none).
    struct Statement: PostgresPreparedStatement {
        typealias Row = Void

        static let sql = """
            INSERT INTO deliveries (stream_id, kind, recipient_id, revision, run_at, created_at, updated_at,
              previous_start_time, last_reply, status, attempts)
            SELECT $1::text, $2::text, v.member, $3::int8, $4::timestamptz, $4::timestamptz, $4::timestamptz, $5::timestamptz,
              NULLIF(v.skip, ''), CASE WHEN v.skip = '' THEN $6::text ELSE $7::text END, 0
            FROM unnest($8::text[], $9::text[]) AS v (member, skip)
            ON CONFLICT (stream_id, kind, recipient_id, revision) DO NOTHING
            """

        let page: PageInsert
        init(_ page: PageInsert) { self.page = page }

        func makeBindings() throws -> PostgresBindings {
            var b = PostgresBindings(capacity: 9)
            b.append(page.streamID); b.append(page.kind.rawValue); b.append(Int64(page.revision)); b.append(page.now)
            b.append(page.previousStart)
            b.append(DeliveryStatus.queued.rawValue); b.append(DeliveryStatus.skipped.rawValue)
            b.append(page.members.map(\.id)); b.append(page.members.map { $0.skip ?? "" })
            return b
        }

        func decodeRow(_ row: PostgresRow) throws {}
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
