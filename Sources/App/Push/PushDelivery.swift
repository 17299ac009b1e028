import Foundation
import SQLKit

/// One push to one device about one stream notice: the push channel's outbox row, unique per
/// (stream, kind, device, revision) — a fan-out re-run never pushes twice.
enum PushDelivery {
    static let schema = "push_deliveries"

    enum Status: String, Codable, Sendable, QueueStatus, CaseIterable {
        case queued, sending, sent, failed, skipped
        static var active: Self { .sending }
    }

    /// A push channel with no credentials: its deliveries are recorded as skipped with this note.
    static let channelDisabled = "channel_disabled"

    /// The preferences column that switches push of `kind` on (defaults: live-now and reminders on).
    static func preferenceColumn(_ kind: NotificationKind) -> (column: String, default: Bool) {
        switch kind {
        case .liveNow: ("push_live_now", true)
        case .reminder, .manualReminder: ("push_reminder", true)
        case .scheduled, .seriesScheduled, .seriesChanged, .rsvpConfirmed: ("push_scheduled", false)
        case .rescheduled: ("push_rescheduled", false)
        case .cancelled, .seriesEnded: ("push_cancelled", false)
        }
    }

    /// Queues the pushes of one fan-out page: every device of `members` whose owner wants push
    /// for `kind` and has not muted the creator. A channel without credentials gets `skipped`
    /// rows (visible in the counts).
    static func enqueue(stream: String, creator: String, kind: NotificationKind, revision: Int, members: [String],
                        enabled: Set<PushChannel>, now: Date, on sql: any SQLDatabase) async throws {
        guard !members.isEmpty else { return }
        let pref = preferenceColumn(kind)
        let enabledPlatforms = DevicePlatform.allCases.filter { enabled.contains($0.channel) }.map { SQLBind($0.rawValue) }
        let isEnabled: SQLQueryString = enabledPlatforms.isEmpty ? "1 = 0" : "d.platform IN (\(SQLList(enabledPlatforms)))"
        try await sql.raw("""
            INSERT INTO push_deliveries (stream_id, kind, recipient_id, device_id, channel, revision, status, attempts, run_at, last_reply, created_at, updated_at)
            SELECT \(bind: stream), \(bind: kind), d.user_id, d.id,
                   CASE WHEN d.platform = \(bind: DevicePlatform.ios.rawValue) THEN \(bind: PushChannel.apns.rawValue) ELSE \(bind: PushChannel.fcm.rawValue) END,
                   \(bind: revision),
                   CASE WHEN \(isEnabled) THEN \(bind: Status.queued.rawValue) ELSE \(bind: Status.skipped.rawValue) END, 0, \(bind: now),
                   CASE WHEN \(isEnabled) THEN NULL ELSE \(bind: channelDisabled) END, \(bind: now), \(bind: now)
            FROM devices d
            WHERE d.user_id IN (\(SQLList(members.map { SQLBind($0) })))
              AND COALESCE((SELECT p.\(unsafeRaw: pref.column) FROM notification_preferences p WHERE p.user_id = d.user_id), \(bind: pref.default)) = \(bind: true)
              AND NOT EXISTS (SELECT 1 FROM notification_mutes m WHERE m.member_id = d.user_id AND m.creator_id = \(bind: creator))
            ON CONFLICT (stream_id, kind, device_id, revision) DO NOTHING
            """).run()
    }
}
