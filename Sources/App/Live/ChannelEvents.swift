import Fluent
import Foundation
import SQLKit

/// Agora's channel events: exact viewer counts (applied per uid only when its clientSeq is newer
/// than what we have), the host's presence (leaving starts the grace period), and a destroyed
/// channel ending its stream — the last two through `StreamLifecycle`.
struct ChannelEvents: Sendable {
    let lifecycle: StreamLifecycle
    /// A channel's stream and its creator's uid never change: read once per channel, not per event.
    private let channels = BoundedCache<String, ChannelRef>(limit: 10_000)
    /// When this process next asks whether the `stream.viewers` webhook is due (a conditional write
    /// on the stream's row, so at most one per minute across replicas); between, events skip it.
    private let viewersCheck = BoundedCache<String, Date>(limit: 10_000)
    /// Viewers' joins, leaves and role changes, applied in groups (see `applyViewers`).
    private let viewerChanges: Coalescer<ViewerChange, Bool>

    /// `sqliteWriter`: the connection the groups are written on with SQLite (nil with PostgreSQL).
    init(lifecycle: StreamLifecycle, sqliteWriter: SQLiteStatementWriter?, database: @escaping @Sendable () -> any Database) {
        self.lifecycle = lifecycle
        let viewersCheck = self.viewersCheck, clock = lifecycle.clock
        viewerChanges = Coalescer(maxBatch: 100) { changes in
            await Self.applyViewers(changes, on: database(), writer: sqliteWriter, viewersCheck: viewersCheck, clock: clock)
        }
    }

    struct ChannelRef: Sendable { let streamID: String; let creatorUID: Int64 }

    /// One viewer's membership change (not the host's: that one can start or stop the grace period).
    struct ViewerChange: Sendable {
        let notice: String
        let record: Attendance.Record
        var streamID: String { record.stream }
    }

    /// An RTC notice. Viewers' membership changes go through the group path and answer whether the
    /// notice was new; nil means this notice is not one of those (the caller applies it alone).
    func submitViewerChange(notice: String, _ event: ChannelEventType, payload: [String: Any], on db: any Database) async throws -> Bool? {
        guard event != .channelDestroyed, event.roleAfter != nil, let channel = payload["channelName"] as? String,
              let ref = try await self.channel(channel, on: db.sql),
              let record = membership(event, payload: payload, stream: ref.streamID), ref.creatorUID != record.uid else { return nil }
        do {
            return try await viewerChanges.submit(ViewerChange(notice: notice, record: record))
        } catch {
            channels.remove(channel) // e.g. the stream was deleted with its creator: read it again on Agora's retry
            throw error
        }
    }

    /// A group of viewers' changes in one statement (`applyGroup`). If the group fails, each change
    /// is applied alone, so one bad event cannot hold up the others.
    static func applyViewers(_ changes: [ViewerChange], on db: any Database, writer: SQLiteStatementWriter?,
                             viewersCheck: BoundedCache<String, Date>, clock: AppClock) async -> [Result<Bool, any Error>] {
        do {
            let fresh = try await applyGroup(changes, now: clock.now(), on: db, writer: writer)
            for stream in Set(changes.map(\.streamID)) {
                try? await Self.viewersWebhookIfDue(stream, on: db, check: viewersCheck, clock: clock)
            }
            return fresh.map { .success($0) }
        } catch {
            var results: [Result<Bool, any Error>] = []
            for change in changes {
                do {
                    let fresh = try await applyGroup([change], now: clock.now(), on: db, writer: writer)
                    if fresh.first == true { try? await Self.viewersWebhookIfDue(change.streamID, on: db, check: viewersCheck, clock: clock) }
                    results.append(.success(fresh.first ?? false))
                } catch {
                    results.append(.failure(error))
                }
            }
            return results
        }
    }

    /// The group as one statement, whatever its size (atomic on its own: no BEGIN and COMMIT around
    /// it): the notices (dedupe: a notice already seen, or twice in the group, is a duplicate), and
    /// for the new ones their attendance rows and each member's change, applied only when newer than
    /// what is stored (concurrent changes of one uid serialize on its row; the trigger of
    /// `AddViewerCountTrigger` moves the count by each change). PostgreSQL: data-modifying CTEs, one
    /// prepared statement (`ViewerGroupStatement`); SQLite: an insert into `viewer_changes`, whose
    /// triggers do the same (`AddViewerChangeInbox`), on `SQLiteStatementWriter`'s connection.
    /// One round trip (PostgreSQL) or one pool-thread job (SQLite) per group, so a slow moment of
    /// either process delays one exchange, not five or seven. Returns whether each change's notice was new.
    private static func applyGroup(_ changes: [ViewerChange], now: Date, on db: any Database,
                                   writer: SQLiteStatementWriter?) async throws -> [Bool] {
        var seen = Set<String>()
        let distinct = changes.filter { seen.insert($0.notice).inserted } // each notice once; the first is the new one
        let inserted: Set<String>
        if let pg = db.sql.postgres {
            inserted = try await ViewerGroupStatement(distinct, now: now).run(on: pg, logger: db.logger)
        } else {
            struct NoticeRow: Decodable { let notice_id: String }
            let rows: [SQLQueryString] = distinct.map { c in
                let r = c.record
                return """
                    (\(bind: c.notice), \(bind: now), \(bind: RandomID.uuid()), \(bind: RandomID.uuid()), \(bind: r.stream), \(bind: r.uid), \
                    \(bind: r.event.rawValue), \(bind: r.role.rawValue), \(bind: r.clientSeq), \(bind: r.at))
                    """
            }
            let query: SQLQueryString = """
                INSERT INTO viewer_changes (notice_id, received_at, attendance_id, member_id, stream_id, uid, event, role, client_seq, at)
                VALUES \(rows.joined(separator: ", ")) RETURNING notice_id
                """
            // Inside a caller's transaction the statement belongs to it (the writer is another connection).
            let returned = if let writer, !db.inTransaction {
                try await writer.run { sql in try await sql.raw(query).all(decoding: NoticeRow.self) }
            } else {
                try await db.writeTransaction { db in try await db.sql.raw(query).all(decoding: NoticeRow.self) }
            }
            inserted = Set(returned.map(\.notice_id))
        }
        var unclaimed = inserted
        return changes.map { unclaimed.remove($0.notice) != nil } // the first of a notice sent twice in one group
    }

    /// Members' rows set to these changes, each only when newer than what is stored (concurrent
    /// changes of one uid serialize on its row); at most one change per member. One statement: the
    /// trigger of `AddViewerCountTrigger` moves the stream's viewer count by each change in it, so a
    /// member is never applied but uncounted. Returns how many were applied (the rest: late duplicates).
    private static func applyMembers(_ records: [Attendance.Record], on sql: any SQLDatabase) async throws -> Int {
        guard !records.isEmpty else { return 0 }
        struct Row: Decodable { let uid: Int64 }
        var upsert = sql.insert(into: "channel_members").columns("id", "stream_id", "uid", "role", "client_seq")
        for r in records { upsert = upsert.values(SQLBind(RandomID.uuid()), SQLBind(r.stream), SQLBind(r.uid), SQLBind(r.role), SQLBind(r.clientSeq)) }
        return try await upsert.onConflict(with: ["stream_id", "uid"]) {
            $0.set(excludedValueOf: "role").set(excludedValueOf: "client_seq")
                .where(SQLColumn("client_seq", table: "channel_members"), .lessThan, SQLExcludedColumn("client_seq"))
        }.returning("uid").all(decoding: Row.self).count
    }

    /// The membership change a notice describes (nil: not one, incomplete, or the Cloud Recording
    /// bot — Linux, clientType 10 — which is not a viewer).
    private func membership(_ event: ChannelEventType, payload: [String: Any], stream: String) -> Attendance.Record? {
        guard let role = event.roleAfter, let uid = (payload["uid"] as? NSNumber)?.int64Value,
              let seq = (payload["clientSeq"] as? NSNumber)?.int64Value,
              !(payload["platform"] as? Int == 6 && payload["clientType"] as? Int == 10) else { return nil }
        let at = (payload["ts"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) } ?? lifecycle.clock.now()
        return Attendance.Record(stream: stream, uid: uid, type: event, role: role, clientSeq: seq, at: at)
    }

    /// Any RTC notice not taken by `submitViewerChange`: the host's presence, a destroyed channel.
    func apply(_ event: ChannelEventType, payload: [String: Any], on db: any Database) async throws {
        guard let channel = payload["channelName"] as? String, let ref = try await self.channel(channel, on: db.sql) else { return } // unknown: ignore
        do {
            try await apply(event, payload: payload, ref: ref, on: db)
        } catch {
            channels.remove(channel) // e.g. the stream was deleted with its creator: read it again on Agora's retry
            throw error
        }
    }

    private func channel(_ channel: String, on sql: any SQLDatabase) async throws -> ChannelRef? {
        if let known = channels.get(channel) { return known }
        struct Row: Decodable { let id: String; let creator_uid: Int64 }
        guard let row = try await sql.raw("""
            SELECT s.id, c.agora_uid AS creator_uid FROM streams s JOIN users c ON c.id = s.creator_id
            WHERE s.agora_channel_id = \(bind: channel)
            """).first(decoding: Row.self) else { return nil }
        let ref = ChannelRef(streamID: row.id, creatorUID: row.creator_uid)
        channels.put(channel, ref)
        return ref
    }

    private func apply(_ event: ChannelEventType, payload: [String: Any], ref: ChannelRef, on db: any Database) async throws {
        let sql = db.sql
        let streamID = ref.streamID
        if event == .channelDestroyed { try await lifecycle.end(streamID, reason: .channelDestroyed, on: db); return }
        guard let record = membership(event, payload: payload, stream: streamID) else { return }
        try await Attendance.record([record], on: sql)
        guard try await Self.applyMembers([record], on: sql) > 0 else { return } // older than what we know: a late duplicate
        try await Self.viewersWebhookIfDue(streamID, on: db, check: viewersCheck, clock: lifecycle.clock)
        // The host: leaving starts the grace period; coming back cancels it (only for a live stream).
        guard ref.creatorUID == record.uid else { return }
        struct StateRow: Decodable { let is_live: Bool, went_live_at: Date?, end_time: Date?, cancelled_at: Date? }
        guard let s = try await sql.raw("SELECT is_live, went_live_at, end_time, cancelled_at FROM streams WHERE id = \(bind: streamID)")
            .first(decoding: StateRow.self),
              StreamState(isLive: s.is_live, wentLiveAt: s.went_live_at, endTime: s.end_time, cancelledAt: s.cancelled_at) == .live else { return }
        if record.role == .none { try await lifecycle.hostLeft(streamID, on: db) } else { try await lifecycle.hostReturned(streamID, on: db) }
    }

    /// `stream.viewers` at most once a minute per stream (decided by one conditional write on the
    /// stream's row, whichever replica gets there first). This process asks again a minute after it
    /// sent one, or 5 s after another replica did (or the stream was not live): not on every event.
    private static func viewersWebhookIfDue(_ streamID: String, on db: any Database, check: BoundedCache<String, Date>, clock: AppClock) async throws {
        let now = clock.now()
        if let next = check.get(streamID), now < next { return }
        let sent = try await WebhookOutbox.viewers(streamID, now: now, on: db)
        check.put(streamID, now.addingTimeInterval(sent ? 60 : 5))
    }

    /// The count from the members' rows (what the increments add up to): run with the
    /// `stream.viewers` webhook, at most once a minute, so a count that ever drifted is put right.
    /// The stream's row is locked before counting (PostgreSQL), so the count includes every change
    /// committed before it and every later change adds to it — a count read first and written after
    /// a concurrent increment would undo that increment.
    static func recount(_ streamID: String, on db: any Database) async throws {
        try await db.writeTransaction { tx in
            let sql = tx.sql
            if sql.dialect.name == "postgresql" {
                try await sql.raw("SELECT id FROM streams WHERE id = \(bind: streamID) FOR UPDATE").run()
            }
            try await sql.raw("""
                UPDATE streams SET viewer_count = (SELECT COUNT(*) FROM channel_members m WHERE m.stream_id = \(bind: streamID)
                                                   AND m.role = \(bind: ChannelRole.audience))
                WHERE id = \(bind: streamID)
                """).run()
        }
    }
}
