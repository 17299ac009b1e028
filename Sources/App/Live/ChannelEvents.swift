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

    init(lifecycle: StreamLifecycle) { self.lifecycle = lifecycle }

    struct ChannelRef: Sendable { let streamID: String; let creatorUID: Int64 }

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
        guard let role = event.roleAfter, let uid = (payload["uid"] as? NSNumber)?.int64Value,
              let seq = (payload["clientSeq"] as? NSNumber)?.int64Value else { return }
        // The Cloud Recording bot (Linux, clientType 10) is not a viewer.
        if payload["platform"] as? Int == 6, payload["clientType"] as? Int == 10 { return }
        let at = (payload["ts"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) } ?? lifecycle.clock.now()
        try await Attendance.record(stream: streamID, uid: uid, type: event, role: role, clientSeq: seq, at: at, on: sql)
        // Applied only when newer than what we know (concurrent events of one uid serialize on its row).
        // One autocommit statement: the trigger of `AddViewerCountTrigger` moves the stream's viewer
        // count by the change in the same statement, so a member is never applied but uncounted.
        struct Row: Decodable { let role: ChannelRole }
        let applied = try await sql.insert(into: "channel_members").columns("id", "stream_id", "uid", "role", "client_seq")
            .values(SQLBind(UUID()), SQLBind(streamID), SQLBind(uid), SQLBind(role), SQLBind(seq))
            .onConflict(with: ["stream_id", "uid"]) {
                $0.set(excludedValueOf: "role").set(excludedValueOf: "client_seq")
                    .where(SQLColumn("client_seq", table: "channel_members"), .lessThan, SQLExcludedColumn("client_seq"))
            }.returning("role").all(decoding: Row.self)
        guard !applied.isEmpty else { return } // older than what we know: a late duplicate
        try await viewersWebhookIfDue(streamID, on: db)
        // The host: leaving starts the grace period; coming back cancels it (only for a live stream).
        guard ref.creatorUID == uid else { return }
        struct StateRow: Decodable { let is_live: Bool, went_live_at: Date?, end_time: Date?, cancelled_at: Date? }
        guard let s = try await sql.raw("SELECT is_live, went_live_at, end_time, cancelled_at FROM streams WHERE id = \(bind: streamID)")
            .first(decoding: StateRow.self),
              StreamState(isLive: s.is_live, wentLiveAt: s.went_live_at, endTime: s.end_time, cancelledAt: s.cancelled_at) == .live else { return }
        if role == .none { try await lifecycle.hostLeft(streamID, on: db) } else { try await lifecycle.hostReturned(streamID, on: db) }
    }

    /// `stream.viewers` at most once a minute per stream (decided by one conditional write on the
    /// stream's row, whichever replica gets there first). This process asks again a minute after it
    /// sent one, or 5 s after another replica did (or the stream was not live): not on every event.
    private func viewersWebhookIfDue(_ streamID: String, on db: any Database) async throws {
        let now = lifecycle.clock.now()
        if let next = viewersCheck.get(streamID), now < next { return }
        let sent = try await WebhookOutbox.viewers(streamID, now: now, on: db)
        viewersCheck.put(streamID, now.addingTimeInterval(sent ? 60 : 5))
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
