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

    /// `local`: this process's worker; pages go to it already leased (sent without a claim or a load
    /// query) while it keeps up — see `LocalDeliveries`. Reminders always go through the queue (their
    /// send-time check looks at other reminders sent meanwhile).
    @discardableResult
    static func run(_ job: Job, db: any Database, now: @Sendable () -> Date, wake: @Sendable () -> Void = {},
                    completion queue: JobQueue? = nil, push: Set<PushChannel> = [], local: LocalDeliveries? = nil) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        guard let stream = try await LiveStream.find(p.streamId, on: db), stream.isEligible(for: p.kind) else {
            return .skipped("stream no longer fits a \(p.kind.rawValue) email")
        }
        let creator = try await stream.$creator.get(on: db)
        guard creator.isActiveCreator else { return .skipped("creator no longer active") }
        let sql = db.sql
        var cursor = ""
        var local = p.kind.isReminder ? nil : local
        let notice = local == nil ? nil : try await DeliverySender.Notice.load([p.streamId], on: sql)[p.streamId]
        while true {
            let page = try await Audience.page(creator: creator.id!, kind: p.kind, stream: p.streamId, seriesOccurrence: stream.seriesID != nil, after: cursor, limit: pageSize, on: sql)
            guard let next = page.next else { break }
            cursor = next
            guard !page.rows.isEmpty else { continue }
            // This page goes to the local worker when it has room (else, from now on, to the queue).
            if let l = local {
                let room = notice == nil ? false : await l.waitForRoom(page.rows.count, timeout: localRoomWait)
                if !room { local = nil }
            }
            let lease = local?.lease
            let t = now()
            // Opted-out and suppressed members get a `skipped` row: visible in the counts, never sent.
            let members = page.rows.map { row in
                (row.uid, row.suppressed == 1 ? DeliverySender.suppressedReason : (row.opted_out == 1 ? "recipient opted out" : nil))
            }
            let insert = PageInsert(streamID: p.streamId, kind: p.kind, revision: p.revision, previousStart: p.previousStart, now: t,
                                    lease: lease, members: members)
            let inserted = try await insert.run(on: sql, returning: local != nil && notice != nil)
            if let local, let notice {
                // Only the rows this run inserted come back (a re-run skips what exists).
                let byID = Dictionary(page.rows.map { ($0.uid, $0) }, uniquingKeysWith: { a, _ in a })
                local.add(inserted.compactMap { i in
                    guard i.status == .sending, let m = byID[i.recipient] else { return nil }
                    return DeliverySender.Row(recipient: .init(
                        id: i.id, kind: p.kind, attempts: 1, stream_id: p.streamId, recipient_id: m.uid, recipient_name: m.name,
                        recipient_email: m.email, recipient_tz: m.timezone, recipient_active: true, recipient_uid: m.agora_uid,
                        in_audience: 1, opted_out: 0, suppressed: 0, reminded_recently: 0, revision: p.revision,
                        previous_start_time: p.previousStart), shared: notice)
                })
            }
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

/// One page of a fan-out's deliveries, inserted idempotently (`ON CONFLICT DO NOTHING` on the once
/// key): a member's row is `skipped` with its reason, or leased to this process's worker (local
/// sending), or queued for any worker. Per row only the member and the skip reason vary.
struct PageInsert: Sendable {
    let streamID: String
    let kind: NotificationKind
    let revision: Int
    let previousStart: Date?
    let now: Date
    let lease: Lease<DeliveryStatus>?
    /// Member id and, for one who must not get it, why.
    let members: [(id: String, skip: String?)]

    struct UnknownStatus: Error { let value: String }

    /// A row this run inserted.
    struct Inserted: Decodable, Sendable {
        let id: Int64
        let recipient: String
        let status: DeliveryStatus
        enum CodingKeys: String, CodingKey { case id, recipient = "recipient_id", status }

        init(id: Int64, recipient: String, status: String) throws {
            guard let s = DeliveryStatus(rawValue: status) else { throw UnknownStatus(value: status) }
            self.id = id
            self.recipient = recipient
            self.status = s
        }
    }

    /// Inserts the page; with `returning`, the rows it inserted (a re-run skips what exists). (PostgreSQL's
    /// one prepared text always returns them.)
    func run(on sql: any SQLDatabase, returning: Bool) async throws -> [Inserted] {
        guard !members.isEmpty else { return [] }
        if let pg = sql.postgres {
            let rows = try await pg.all(Statement(self), prepared: true, logger: sql.logger)
            return try rows.map { id, recipient, status in try Inserted(id: id, recipient: recipient, status: status) }
        }
        // SQLite: one statement per page, the page's values bound once, per row the member and the reason.
        var rowsSQL: SQLQueryString = ""
        for (i, m) in members.enumerated() {
            rowsSQL += i == 0 ? "(\(bind: m.id), " : ", (\(bind: m.id), "
            rowsSQL += m.skip.map { "\(bind: $0))" } ?? "NULL)"
        }
        func nullable<T: Encodable & Sendable>(_ value: T?) -> SQLQueryString { value.map { "\(bind: $0)" } ?? "NULL" }
        let state: SQLQueryString = if let lease {
            """
            CASE WHEN v.column2 IS NULL THEN \(bind: DeliveryStatus.sending) ELSE \(bind: DeliveryStatus.skipped) END,
            CASE WHEN v.column2 IS NULL THEN 1 ELSE 0 END, CASE WHEN v.column2 IS NULL THEN \(bind: lease.workerID) END,
            CASE WHEN v.column2 IS NULL THEN \(bind: now.addingTimeInterval(lease.duration)) END
            """
        } else {
            "CASE WHEN v.column2 IS NULL THEN \(bind: DeliveryStatus.queued) ELSE \(bind: DeliveryStatus.skipped) END, 0, NULL, NULL"
        }
        let insert: SQLQueryString = """
            INSERT INTO \(ident: Delivery.schema) (stream_id, kind, recipient_id, revision, run_at, created_at, updated_at,
              previous_start_time, last_reply, status, attempts, locked_by, locked_until)
            SELECT \(bind: streamID), \(bind: kind), v.column1, \(bind: revision), \(bind: now), \(bind: now), \(bind: now),
              \(nullable(previousStart)), v.column2, \(state)
            FROM (VALUES \(rowsSQL)) AS v
            WHERE true
            ON CONFLICT (stream_id, kind, recipient_id, revision) DO NOTHING
            """
        guard returning else {
            try await sql.raw(insert).run()
            return []
        }
        let returning = insert + " RETURNING id, recipient_id, status"
        guard let lite = sql.sqlite else { return try await sql.raw(returning).all(decoding: Inserted.self) }
        return try await lite.rows(returning, sql: sql).map { r in
            try Inserted(id: Int64(try r.required(r.int("id"), "id")), recipient: try r.required(r.string("recipient_id"), "recipient_id"),
                         status: try r.required(r.string("status"), "status"))
        }
    }

    /// PostgreSQL: the same insert as one prepared statement for every page (members as arrays;
    /// an empty reason stands for none).
    struct Statement: PostgresPreparedStatement {
        typealias Row = (Int64, String, String)

        static let sql = """
            INSERT INTO deliveries (stream_id, kind, recipient_id, revision, run_at, created_at, updated_at,
              previous_start_time, last_reply, status, attempts, locked_by, locked_until)
            SELECT $1::text, $2::text, v.member, $3::int8, $4::timestamptz, $4::timestamptz, $4::timestamptz, $5::timestamptz,
              NULLIF(v.skip, ''), CASE WHEN v.skip = '' THEN $6::text ELSE $7::text END,
              CASE WHEN v.skip = '' AND $8::text IS NOT NULL THEN 1 ELSE 0 END,
              CASE WHEN v.skip = '' THEN $8::text END, CASE WHEN v.skip = '' THEN $9::timestamptz END
            FROM unnest($10::text[], $11::text[]) AS v (member, skip)
            ON CONFLICT (stream_id, kind, recipient_id, revision) DO NOTHING
            RETURNING id, recipient_id, status
            """

        let page: PageInsert
        init(_ page: PageInsert) { self.page = page }

        func makeBindings() throws -> PostgresBindings {
            var b = PostgresBindings(capacity: 11)
            b.append(page.streamID); b.append(page.kind.rawValue); b.append(Int64(page.revision)); b.append(page.now)
            b.append(page.previousStart)
            b.append((page.lease == nil ? DeliveryStatus.queued : .sending).rawValue); b.append(DeliveryStatus.skipped.rawValue)
            b.append(page.lease?.workerID); b.append(page.lease.map { page.now.addingTimeInterval($0.duration) })
            b.append(page.members.map(\.id)); b.append(page.members.map { $0.skip ?? "" })
            return b
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
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
