import Fluent
import Foundation
import SQLKit

/// Agora's channel events: exact viewer counts (applied per uid only when its clientSeq is newer
/// than what we have), the host's presence (leaving starts the grace period), and a destroyed
/// channel ending its stream — the last two through `StreamLifecycle`.
struct ChannelEvents: Sendable {
    let lifecycle: StreamLifecycle

    func apply(_ event: ChannelEventType, payload: [String: Any], on db: any Database) async throws {
        let sql = db.sql
        // The stream and its creator's uid in one plain query (every viewer's join passes here).
        struct StreamRow: Decodable {
            let id: String, is_live: Bool, went_live_at: Date?, end_time: Date?, cancelled_at: Date?, creator_uid: Int64
        }
        guard let channel = payload["channelName"] as? String,
              let stream = try await sql.raw("""
                  SELECT s.id, s.is_live, s.went_live_at, s.end_time, s.cancelled_at, c.agora_uid AS creator_uid
                  FROM streams s JOIN users c ON c.id = s.creator_id WHERE s.agora_channel_id = \(bind: channel)
                  """).first(decoding: StreamRow.self) else { return } // unknown: ignore
        let streamID = stream.id
        if event == .channelDestroyed { try await lifecycle.end(streamID, reason: .channelDestroyed, on: db); return }
        guard let role = event.roleAfter, let uid = (payload["uid"] as? NSNumber)?.int64Value,
              let seq = (payload["clientSeq"] as? NSNumber)?.int64Value else { return }
        // The Cloud Recording bot (Linux, clientType 10) is not a viewer.
        if payload["platform"] as? Int == 6, payload["clientType"] as? Int == 10 { return }
        let at = (payload["ts"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) } ?? lifecycle.clock.now()
        try await Attendance.record(stream: streamID, uid: uid, type: event, role: role, clientSeq: seq, at: at, on: sql)
        // Applied only when newer than what we know; the row keeps the role it replaced, so the upsert
        // itself tells exactly which change happened (concurrent events of one uid serialize on its row).
        // The change and the count move together (one short write transaction): a failure between
        // them (SQLITE_BUSY, a lost connection) must not leave a member applied but uncounted.
        let changed = try await db.writeTransaction { tx in
            struct Row: Decodable { let role: ChannelRole; let prev_role: ChannelRole? }
            let applied = try await tx.sql.insert(into: "channel_members").columns("id", "stream_id", "uid", "role", "client_seq", "prev_role")
                .values(SQLBind(UUID()), SQLBind(streamID), SQLBind(uid), SQLBind(role), SQLBind(seq), SQLLiteral.null)
                .onConflict(with: ["stream_id", "uid"]) {
                    $0.set("prev_role", to: SQLColumn("role", table: "channel_members"))
                        .set(excludedValueOf: "role").set(excludedValueOf: "client_seq")
                        .where(SQLColumn("client_seq", table: "channel_members"), .lessThan, SQLExcludedColumn("client_seq"))
                }.returning("role", "prev_role").all(decoding: Row.self)
            guard let change = applied.first else { return false } // older than what we know: a late duplicate
            let delta = (change.role == .audience ? 1 : 0) - (change.prev_role == .audience ? 1 : 0)
            if delta != 0 {
                try await tx.sql.raw("UPDATE streams SET viewer_count = viewer_count + \(literal: delta) WHERE id = \(bind: streamID)").run()
            }
            return true
        }
        guard changed else { return }
        try await WebhookOutbox.viewers(streamID, now: lifecycle.clock.now(), on: db)
        // The host: leaving starts the grace period; coming back cancels it.
        let state = StreamState(isLive: stream.is_live, wentLiveAt: stream.went_live_at, endTime: stream.end_time, cancelledAt: stream.cancelled_at)
        guard stream.creator_uid == uid, state == .live else { return }
        if role == .none { try await lifecycle.hostLeft(streamID, on: db) } else { try await lifecycle.hostReturned(streamID, on: db) }
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
