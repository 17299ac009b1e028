import Fluent
import Foundation
import SQLKit

/// Agora's channel events: exact viewer counts (applied per uid only when its clientSeq is newer
/// than what we have), the host's presence (leaving starts the grace period), and a destroyed
/// channel ending its stream — the last two through `StreamLifecycle`.
struct ChannelEvents: Sendable {
    let lifecycle: StreamLifecycle

    func apply(_ event: ChannelEventType, payload: [String: Any], on db: any Database) async throws {
        guard let channel = payload["channelName"] as? String,
              let stream = try await LiveStream.query(on: db).filter(\.$agoraChannelId == channel).first() else { return } // unknown: ignore
        let streamID = try stream.requireID()
        if event == .channelDestroyed { try await lifecycle.end(streamID, reason: .channelDestroyed, on: db); return }
        guard let role = event.roleAfter, let uid = (payload["uid"] as? NSNumber)?.int64Value,
              let seq = (payload["clientSeq"] as? NSNumber)?.int64Value else { return }
        // The Cloud Recording bot (Linux, clientType 10) is not a viewer.
        if payload["platform"] as? Int == 6, payload["clientType"] as? Int == 10 { return }
        let sql = db.sql
        let at = (payload["ts"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) } ?? lifecycle.clock.now()
        try await Attendance.record(stream: streamID, uid: uid, type: event, role: role, clientSeq: seq, at: at, on: sql)
        struct Row: Decodable { let uid: Int64 }
        let applied = try await sql.insert(into: "channel_members").columns("id", "stream_id", "uid", "role", "client_seq")
            .values(SQLBind(UUID()), SQLBind(streamID), SQLBind(uid), SQLBind(role), SQLBind(seq))
            .onConflict(with: ["stream_id", "uid"]) {
                $0.set(excludedValueOf: "role").set(excludedValueOf: "client_seq")
                    .where(SQLColumn("client_seq", table: "channel_members"), .lessThan, SQLExcludedColumn("client_seq"))
            }.returning("uid").all(decoding: Row.self)
        guard !applied.isEmpty else { return } // older than what we know: a late duplicate
        try await sql.raw("""
            UPDATE streams SET viewer_count = (SELECT COUNT(*) FROM channel_members m WHERE m.stream_id = \(bind: streamID)
                                               AND m.role = \(bind: ChannelRole.audience))
            WHERE id = \(bind: streamID)
            """).run()
        try await WebhookOutbox.viewers(streamID, now: lifecycle.clock.now(), on: db)
        // The host: leaving starts the grace period; coming back cancels it.
        let creator = try await stream.$creator.get(on: db)
        guard creator.agoraUid == uid, stream.state == .live else { return }
        if role == .none { try await lifecycle.hostLeft(streamID, on: db) } else { try await lifecycle.hostReturned(streamID, on: db) }
    }
}
