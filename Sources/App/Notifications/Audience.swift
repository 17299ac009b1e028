import Foundation
import SQLKit

/// Who gets which notification — the one rule, as SQL that fan-out, counts, the send-time
/// re-check and the feeds all use:
///
/// - A creator's audience: their followers ∪ their active subscribers, one row per person, only
///   active accounts, never the creator.
/// - Per kind, a member is opted out when they muted the creator or switched the kind off in their
///   preferences (`NotificationKind.preferenceColumn`: rescheduled and cancelled follow the
///   `scheduled` switch; both reminder kinds follow `reminder`). Opted-out members get a `skipped`
///   delivery at fan-out, and a queued one turns `skipped` if they opt out before it is sent.
/// - Rescheduled and cancelled notices go only to those who were sent the stream's scheduled email.
/// - At send time the same rule is asked again (an unfollow, a cancelled subscription, a
///   deactivated account or an opt-out after the fan-out takes effect), the creator must still be an
///   active creator, and a reminder is not sent to someone reminded of the same stream within
///   `reminderSpacing`.
/// - An address on the suppression list (hard bounce, complaint, repeated soft bounces) gets a
///   `skipped` delivery at fan-out and is re-checked at send time, whatever the transport.
/// - Erasure: a user deleted by the admin API takes their follows, subscriptions, preferences and
///   deliveries with them (foreign keys cascade).
enum Audience {
    /// Two reminders of one stream to one member are at least this far apart.
    static let reminderSpacing: TimeInterval = 15 * 60

    /// A kind fixed in the query, or read from a column of each row (the sender's batch mixes kinds).
    enum KindRef {
        case fixed(NotificationKind)
        case column(String)
    }

    /// Member ids (`uid`) of `creator`'s audience.
    static func members(of creator: String) -> SQLQueryString {
        """
        SELECT u.id AS uid FROM (
          SELECT f.follower_id AS rid FROM follows f WHERE f.followed_id = \(bind: creator)
          UNION
          SELECT s.member_id AS rid FROM subscriptions s WHERE s.creator_id = \(bind: creator) AND s.status = \(bind: SubscriptionStatus.active)
        ) r JOIN users u ON u.id = r.rid
        WHERE \(activeMember(user: "u", creator: SQLBind(creator)))
        """
    }

    /// The audience of a notice of `kind` about `stream` (see the rules above), opt-outs included.
    static func eligible(creator: String, kind: NotificationKind, stream: String) -> SQLQueryString {
        let base: SQLQueryString = kind.audienceIsScheduledRecipients
            ? "SELECT a.uid FROM (\(members(of: creator))) a WHERE \(receivedSchedule(member: "a.uid", stream: SQLBind(stream)))"
            : members(of: creator)
        guard !kind.rsvpStatuses.isEmpty else { return base }
        return """
            \(base) UNION SELECT u.id AS uid FROM rsvps r JOIN users u ON u.id = r.user_id
            WHERE r.stream_id = \(bind: stream) AND r.status IN (\(SQLList(kind.rsvpStatuses.map { SQLBind($0.rawValue) })))
              AND \(activeMember(user: "u", creator: SQLBind(creator)))
            """
    }

    /// True while `member` holds an RSVP to `stream` that counts for the delivery's kind (`kindColumn`).
    static func hasRSVP(member: String, stream: String, kindColumn: String) -> SQLQueryString {
        """
        EXISTS (SELECT 1 FROM rsvps rv WHERE rv.user_id = \(unsafeRaw: member) AND rv.stream_id = \(unsafeRaw: stream)
                AND (rv.status = \(bind: RSVP.Status.confirmed.rawValue)
                     OR \(unsafeRaw: kindColumn) IN (\(SQLList(NotificationKind.allCases.filter { $0.rsvpStatuses.contains(.waitlisted) }.map { SQLBind($0.rawValue) })))))
        """
    }

    /// An account that may receive a creator's notices: active and not the creator themself.
    static func activeMember(user alias: String, creator: any SQLExpression) -> SQLQueryString {
        "\(unsafeRaw: alias).is_active = \(bind: true) AND \(unsafeRaw: alias).id <> \(creator)"
    }

    /// True while `member` follows or actively subscribes to `creator`.
    static func follows(member: String, creator: String) -> SQLQueryString {
        """
        (EXISTS (SELECT 1 FROM follows f WHERE f.follower_id = \(unsafeRaw: member) AND f.followed_id = \(unsafeRaw: creator))
         OR EXISTS (SELECT 1 FROM subscriptions x WHERE x.member_id = \(unsafeRaw: member) AND x.creator_id = \(unsafeRaw: creator)
                    AND x.status = \(bind: SubscriptionStatus.active)))
        """
    }

    /// True when the stream's scheduled email was sent to `member`.
    static func receivedSchedule(member: String, stream: any SQLExpression) -> SQLQueryString {
        """
        EXISTS (SELECT 1 FROM deliveries g WHERE g.stream_id = \(stream) AND g.kind = \(bind: NotificationKind.scheduled)
                AND g.status = \(bind: DeliveryStatus.sent) AND g.recipient_id = \(unsafeRaw: member))
        """
    }

    /// 1 when `member` muted `creator` or switched `kind` off, else 0.
    static func optedOut(member: String, creator: any SQLExpression, kind: KindRef) -> SQLQueryString {
        let switchedOff: SQLQueryString
        switch kind {
        case .fixed(let k):
            switchedOff = "p.\(unsafeRaw: k.preferenceColumn) = \(bind: false)"
        case .column(let column):
            var choice: SQLQueryString = "(CASE \(unsafeRaw: column)"
            for k in NotificationKind.allCases { choice += " WHEN \(bind: k.rawValue) THEN p.\(unsafeRaw: k.preferenceColumn)" }
            switchedOff = choice + " END) = \(bind: false)"
        }
        return """
            (CASE WHEN EXISTS (SELECT 1 FROM notification_mutes m WHERE m.member_id = \(unsafeRaw: member) AND m.creator_id = \(creator))
              OR EXISTS (SELECT 1 FROM notification_preferences p WHERE p.user_id = \(unsafeRaw: member) AND \(switchedOff))
             THEN 1 ELSE 0 END)
            """
    }

    /// 1 when the delivery (table alias `d`) is a reminder and its member was sent another reminder
    /// (either kind) of the same stream since `since`; other kinds never look.
    static func remindedRecently(delivery d: String, since: Date) -> SQLQueryString {
        let reminderKinds = SQLList(NotificationKind.reminders.map { SQLBind($0) })
        return """
            (CASE WHEN \(unsafeRaw: d).kind IN (\(reminderKinds)) AND EXISTS (
                SELECT 1 FROM deliveries r WHERE r.stream_id = \(unsafeRaw: d).stream_id AND r.recipient_id = \(unsafeRaw: d).recipient_id
                AND r.kind IN (\(reminderKinds)) AND r.status = \(bind: DeliveryStatus.sent) AND r.sent_at >= \(bind: since)
                AND r.id <> \(unsafeRaw: d).id)
             THEN 1 ELSE 0 END)
            """
    }

    /// Eligible, not opted-out members with no delivery of this kind/revision for the stream yet.
    static func countNotYetQueued(creator: String, stream: String, kind: NotificationKind, revision: Int, on sql: any SQLDatabase) async throws -> Int {
        struct Row: Decodable { let n: Int }
        let query: SQLQueryString = """
            SELECT COUNT(*) AS n FROM (\(eligible(creator: creator, kind: kind, stream: stream))) e JOIN users su ON su.id = e.uid
            WHERE \(optedOut(member: "e.uid", creator: SQLBind(creator), kind: .fixed(kind))) = 0 AND \(Suppression.isSuppressed(user: "su")) = 0
              AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.stream_id = \(bind: stream) AND d.kind = \(bind: kind)
                              AND d.revision = \(bind: revision) AND d.recipient_id = e.uid)
            """
        return try await sql.raw(query).first(decoding: Row.self)?.n ?? 0
    }

    struct PageRow: Decodable, Sendable {
        let uid: String
        let opted_out: Int
        let suppressed: Int
        /// What the email needs of the member (the fan-out hands fresh rows straight to its own worker).
        let name: String
        let email: String
        let timezone: String?
        let agora_uid: Int64
        /// 1 when the member already has a delivery of this notice (`recordedRevision`), else 0.
        let recorded: Int
    }

    struct Page: Sendable {
        /// Eligible members of this page (opt-outs marked).
        let rows: [PageRow]
        /// Where the next page starts; nil when no candidates are left.
        let next: String?
    }

    /// The next page of a notice's audience after `cursor`, in id order. Keyset pagination *inside*
    /// each branch of the union (each reads at most `limit` ids from its index), so every page costs
    /// the same however large the audience is; the rule's filters apply after, which is why the
    /// cursor is the last candidate rather than the last row.
    /// `seriesOccurrence`: the stream is an occurrence of a series, whose announcement went to
    /// the audience as a series notice — its reschedule and cancel go to the audience (and RSVPs).
    /// `recordedRevision`: marks members who already have a delivery of this kind and revision.
    static func page(creator: String, kind: NotificationKind, stream: String, seriesOccurrence: Bool = false, after cursor: String, limit: Int,
                     recordedRevision: Int? = nil, on sql: any SQLDatabase) async throws -> Page {
        let rsvp = kind.rsvpStatuses
        let rsvpStatuses = SQLList((rsvp.isEmpty ? [RSVP.Status.confirmed] : rsvp).map { SQLBind($0.rawValue) })
        let hasRSVP: SQLQueryString = rsvp.isEmpty ? "1 = 0"
            : "EXISTS (SELECT 1 FROM rsvps rq WHERE rq.stream_id = \(bind: stream) AND rq.user_id = u.id AND rq.status IN (\(rsvpStatuses)))"
        let scheduledOnly: SQLQueryString = kind.audienceIsScheduledRecipients && !seriesOccurrence
            ? "AND (\(receivedSchedule(member: "u.id", stream: SQLBind(stream))) OR \(hasRSVP))" : ""
        let rsvpBranch: SQLQueryString = rsvp.isEmpty ? "" : """
                UNION
                SELECT rid FROM (SELECT r.user_id AS rid FROM rsvps r WHERE r.stream_id = \(bind: stream) AND r.status IN (\(rsvpStatuses))
                                 AND r.user_id > \(bind: cursor) ORDER BY r.user_id LIMIT \(literal: limit)) ra
            """
        let recorded: SQLQueryString = recordedRevision.map { revision in
            """
            (CASE WHEN EXISTS (SELECT 1 FROM deliveries dr WHERE dr.stream_id = \(bind: stream) AND dr.kind = \(bind: kind)
                               AND dr.recipient_id = u.id AND dr.revision = \(bind: revision)) THEN 1 ELSE 0 END)
            """
        } ?? "0"
        let query: SQLQueryString = """
            SELECT c.rid AS candidate, u.id AS uid, \(optedOut(member: "u.id", creator: SQLBind(creator), kind: .fixed(kind))) AS opted_out,
                   \(Suppression.isSuppressed(user: "u")) AS suppressed, u.name, u.email, u.timezone, u.agora_uid, \(recorded) AS recorded
            FROM (
              SELECT rid FROM (
                SELECT rid FROM (SELECT f.follower_id AS rid FROM follows f WHERE f.followed_id = \(bind: creator) AND f.follower_id > \(bind: cursor)
                                 ORDER BY f.follower_id LIMIT \(literal: limit)) fa
                UNION
                SELECT rid FROM (SELECT s.member_id AS rid FROM subscriptions s WHERE s.creator_id = \(bind: creator)
                                 AND s.status = \(bind: SubscriptionStatus.active)
                                 AND s.member_id > \(bind: cursor) ORDER BY s.member_id LIMIT \(literal: limit)) sa
                \(rsvpBranch)
              ) both_ ORDER BY rid LIMIT \(literal: limit)
            ) c
            LEFT JOIN users u ON u.id = c.rid AND \(activeMember(user: "u", creator: SQLBind(creator))) \(scheduledOnly)
            ORDER BY c.rid
            """
        struct Row: Decodable {
            let candidate: String, uid: String?, opted_out: Int, suppressed: Int, name: String?, email: String?, timezone: String?, agora_uid: Int64?
            let recorded: Int
        }
        let rows: [Row]
        if let pg = sql.postgres, let pgRows = try await pg.rows(query, sql: sql, logger: sql.logger) {
            rows = try pgRows.map { r in
                let (candidate, uid, optedOut, suppressed, name, email, timezone, agoraUID, recorded) =
                    try r.decode((String, String?, Int, Int, String?, String?, String?, Int64?, Int).self)
                return Row(candidate: candidate, uid: uid, opted_out: optedOut, suppressed: suppressed, name: name, email: email,
                           timezone: timezone, agora_uid: agoraUID, recorded: recorded)
            }
        } else if let lite = sql.sqlite {
            rows = try await lite.rows(query, sql: sql).map { r in
                Row(candidate: try r.required(r.string("candidate"), "candidate"), uid: try r.string("uid"),
                    opted_out: try r.required(r.int("opted_out"), "opted_out"), suppressed: try r.required(r.int("suppressed"), "suppressed"),
                    name: try r.string("name"), email: try r.string("email"), timezone: try r.string("timezone"), agora_uid: try r.int("agora_uid").map(Int64.init),
                    recorded: try r.required(r.int("recorded"), "recorded"))
            }
        } else {
            rows = try await sql.raw(query).all(decoding: Row.self)
        }
        return Page(rows: rows.compactMap { r in
            guard let uid = r.uid, let name = r.name, let email = r.email, let agoraUID = r.agora_uid else { return nil }
            return PageRow(uid: uid, opted_out: r.opted_out, suppressed: r.suppressed, name: name, email: email, timezone: r.timezone, agora_uid: agoraUID,
                           recorded: r.recorded)
        }, next: rows.last?.candidate)
    }

    /// The creators whose audience `member` is in (the member's feeds).
    static func creators(followedBy member: String) -> SQLQueryString {
        """
        SELECT followed_id AS id FROM follows WHERE follower_id = \(bind: member)
        UNION SELECT creator_id AS id FROM subscriptions WHERE member_id = \(bind: member) AND status = \(bind: SubscriptionStatus.active)
        """
    }
}

extension NotificationKind {
    /// The notification_preferences column that switches this kind on or off.
    var preferenceColumn: String {
        switch self {
        case .liveNow: "live_now"
        case .scheduled, .rescheduled, .cancelled: "scheduled"
        case .reminder, .manualReminder: "reminder"
        case .rsvpConfirmed, .seriesScheduled, .seriesChanged, .seriesEnded: "scheduled"
        }
    }
}
