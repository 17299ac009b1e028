import Foundation
import SQLKit

/// Who gets a creator's emails: followers ∪ active subscribers, one row per person (UNION
/// dedupes by user id), active users only, never the creator. Opt-outs (a muted creator or a
/// switched-off kind) are computed here too, in SQL, so counts, fan-outs and sends agree.
enum Recipients {
    /// Everyone eligible for `kind`: the creator's audience, or — for reschedule/cancel notices —
    /// those of them who were sent the stream's scheduled email.
    static func eligible(creator: String, kind: NotificationKind, stream: String) -> SQLQueryString {
        guard kind.audienceIsScheduledRecipients else { return eligible(creator: creator) }
        return """
            SELECT a.uid FROM (\(eligible(creator: creator))) a
            WHERE EXISTS (SELECT 1 FROM deliveries g WHERE g.stream_id = \(bind: stream) AND g.kind = 'scheduled'
                          AND g.status = 'sent' AND g.recipient_id = a.uid)
            """
    }

    static func eligible(creator: String) -> SQLQueryString {
        """
        SELECT u.id AS uid FROM (
          SELECT f.follower_id AS rid FROM follows f WHERE f.followed_id = \(bind: creator)
          UNION
          SELECT s.member_id AS rid FROM subscriptions s WHERE s.creator_id = \(bind: creator) AND s.status = 'active'
        ) r JOIN users u ON u.id = r.rid
        WHERE u.is_active = \(bind: true) AND u.id <> \(bind: creator)
        """
    }

    /// 1 when `memberColumn`'s member muted the creator or switched `kind` off, else 0.
    static func optedOut(memberColumn: String, creator: String, kind: NotificationKind) -> SQLQueryString {
        """
        (CASE WHEN EXISTS (SELECT 1 FROM notification_mutes m WHERE m.member_id = \(unsafeRaw: memberColumn) AND m.creator_id = \(bind: creator))
          OR EXISTS (SELECT 1 FROM notification_preferences p WHERE p.user_id = \(unsafeRaw: memberColumn) AND p.\(unsafeRaw: kind.preferenceColumn) = \(bind: false))
         THEN 1 ELSE 0 END)
        """
    }

    /// Eligible, not opted-out members with no delivery of this kind/revision for the stream yet.
    static func countNotYetQueued(creator: String, stream: String, kind: NotificationKind, revision: Int, on sql: any SQLDatabase) async throws -> Int {
        struct Row: Decodable { let n: Int }
        let query: SQLQueryString = """
            SELECT COUNT(*) AS n FROM (\(eligible(creator: creator, kind: kind, stream: stream))) e
            WHERE \(optedOut(memberColumn: "e.uid", creator: creator, kind: kind)) = 0
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.stream_id = \(bind: stream) AND d.kind = \(bind: kind.rawValue)
                              AND d.revision = \(bind: revision) AND d.recipient_id = e.uid)
            """
        return try await sql.raw(query).first(decoding: Row.self)?.n ?? 0
    }

    struct PageRow: Decodable, Sendable { let uid: String; let opted_out: Int }

    struct Page: Sendable {
        /// Eligible members of this page (opt-outs marked).
        let rows: [PageRow]
        /// Where the next page starts; nil when no candidates are left.
        let next: String?
    }

    /// The next page of the audience after `cursor`, in id order. Keyset pagination *inside* each
    /// branch of the union (each reads at most `limit` ids from its index), so every page costs the
    /// same however large the audience is; filtering (inactive, the creator, reschedule audience)
    /// happens after, which is why the cursor is the last candidate rather than the last row.
    static func page(creator: String, kind: NotificationKind, stream: String, after cursor: String, limit: Int, on sql: any SQLDatabase) async throws -> Page {
        let scheduledOnly: SQLQueryString = kind.audienceIsScheduledRecipients ? """
            AND EXISTS (SELECT 1 FROM deliveries g WHERE g.stream_id = \(bind: stream) AND g.kind = 'scheduled'
                        AND g.status = 'sent' AND g.recipient_id = u.id)
            """ : ""
        let query: SQLQueryString = """
            SELECT c.rid AS candidate, u.id AS uid, \(optedOut(memberColumn: "u.id", creator: creator, kind: kind)) AS opted_out
            FROM (
              SELECT rid FROM (
                SELECT rid FROM (SELECT f.follower_id AS rid FROM follows f WHERE f.followed_id = \(bind: creator) AND f.follower_id > \(bind: cursor)
                                 ORDER BY f.follower_id LIMIT \(literal: limit)) fa
                UNION
                SELECT rid FROM (SELECT s.member_id AS rid FROM subscriptions s WHERE s.creator_id = \(bind: creator) AND s.status = 'active'
                                 AND s.member_id > \(bind: cursor) ORDER BY s.member_id LIMIT \(literal: limit)) sa
              ) both_ ORDER BY rid LIMIT \(literal: limit)
            ) c
            LEFT JOIN users u ON u.id = c.rid AND u.is_active = \(bind: true) AND u.id <> \(bind: creator) \(scheduledOnly)
            ORDER BY c.rid
            """
        struct Row: Decodable { let candidate: String; let uid: String?; let opted_out: Int }
        let rows = try await sql.raw(query).all(decoding: Row.self)
        return Page(rows: rows.compactMap { r in r.uid.map { PageRow(uid: $0, opted_out: r.opted_out) } }, next: rows.last?.candidate)
    }
}

extension NotificationKind {
    /// The notification_preferences column that switches this kind on or off.
    var preferenceColumn: String {
        switch self {
        case .liveNow: "live_now"
        case .scheduled, .rescheduled, .cancelled: "scheduled"
        case .reminder: "reminder"
        }
    }
}
