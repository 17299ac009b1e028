import Fluent
import Foundation
import Logging
import Mailer
import SQLKit

/// Sends claimed deliveries: renders each for its recipient (their name and time zone), sends it,
/// and records the outcome right after the server's reply, so a crash re-sends at most what was
/// in flight.
struct DeliverySender: Sendable {
    let transport: any MailTransport
    let templates: EmailTemplates
    let settings: AppConfig.MailSettings
    let clock: AppClock
    let logger: Logger
    let unsubscribe: UnsubscribeTokens
    let metrics: AppMetrics
    let outcomes: OutcomeLog
    /// Host of calendar UIDs and domain of Message-IDs (parsed once, not per email).
    private let calendarHost: String, messageDomain: String

    init(transport: any MailTransport, templates: EmailTemplates, settings: AppConfig.MailSettings, clock: AppClock,
         logger: Logger, unsubscribe: UnsubscribeTokens, metrics: AppMetrics) {
        self.transport = transport
        self.templates = templates
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.unsubscribe = unsubscribe
        self.metrics = metrics
        outcomes = OutcomeLog(now: clock.now)
        calendarHost = URL(string: settings.publicBaseURL)?.host ?? "localhost"
        messageDomain = settings.from.address.split(separator: "@").last.map(String.init) ?? "localhost"
    }

    /// What a delivery needs, in one query: recipient, stream, creator, and whether the recipient
    /// is still eligible (unfollows and cancelled subscriptions take effect on the next email).
    struct Row: Decodable, Sendable {
        let id: Int64
        let kind: String
        let attempts: Int
        let stream_id: String
        let recipient_id: String
        let recipient_name: String
        let recipient_email: String
        let recipient_tz: String?
        let recipient_active: Bool
        let recipient_uid: Int64
        let still_follows: Int
        let opted_out: Int
        let revision: Int
        let previous_start_time: Date?
        let schedule_revision: Int
        let is_live: Bool
        let has_ended: Int
        let is_cancelled: Int
        let title: String
        let description: String?
        let workout_type: String?
        let start_time: Date
        let creator_id: String
        let creator_name: String
        let creator_tz: String?
    }

    func load(_ ids: [Int64], on sql: any SQLDatabase) async throws -> [Row] {
        guard !ids.isEmpty else { return [] }
        let idList = SQLList(ids.map { SQLBind($0) })
        let query: SQLQueryString = """
            SELECT d.id, d.kind, d.attempts, d.stream_id, d.recipient_id, d.revision,
                   u.name AS recipient_name, u.email AS recipient_email, u.timezone AS recipient_tz, u.is_active AS recipient_active,
                   u.agora_uid AS recipient_uid,
                   (SELECT COUNT(*) FROM follows f WHERE f.follower_id = d.recipient_id AND f.followed_id = s.creator_id)
                   + (SELECT COUNT(*) FROM subscriptions x WHERE x.member_id = d.recipient_id AND x.creator_id = s.creator_id AND x.status = 'active') AS still_follows,
                   (SELECT COUNT(*) FROM notification_mutes m WHERE m.member_id = d.recipient_id AND m.creator_id = s.creator_id)
                   + (SELECT COUNT(*) FROM notification_preferences p WHERE p.user_id = d.recipient_id AND (
                        (d.kind = 'live_now' AND p.live_now = \(bind: false)) OR (d.kind = 'scheduled' AND p.scheduled = \(bind: false))
                        OR (d.kind = 'reminder' AND p.reminder = \(bind: false)))) AS opted_out,
                   d.previous_start_time, s.schedule_revision, s.is_live,
                   (CASE WHEN s.end_time IS NULL THEN 0 ELSE 1 END) AS has_ended, (CASE WHEN s.cancelled_at IS NULL THEN 0 ELSE 1 END) AS is_cancelled,
                   s.title, s.description, s.workout_type, s.start_time, s.creator_id, c.name AS creator_name, c.timezone AS creator_tz
            FROM deliveries d
            JOIN users u ON u.id = d.recipient_id
            JOIN streams s ON s.id = d.stream_id
            JOIN users c ON c.id = s.creator_id
            WHERE d.id IN (\(idList))
            """
        return try await sql.raw(query).all(decoding: Row.self)
    }

    /// Sends one delivery and records its outcome.
    func process(_ row: Row, on db: any Database) async {
        let sql = db as! any SQLDatabase
        do {
            guard row.recipient_active, row.still_follows > 0, row.opted_out == 0 else {
                let reason = row.opted_out > 0 ? "recipient opted out" : "recipient no longer eligible"
                try await finish(row.id, status: Delivery.Status.skipped, reply: reason, on: sql)
                metrics.email(kind: row.kind, status: Delivery.Status.skipped)
                return
            }
            // The stream changed since the row was queued (e.g. cancelled before a reminder went out).
            guard row.streamStillWants else {
                try await finish(row.id, status: Delivery.Status.skipped, reply: "stream no longer \(row.kind == "live_now" ? "live" : "upcoming")", on: sql)
                metrics.email(kind: row.kind, status: Delivery.Status.skipped)
                return
            }
            let message = compose(row)
            let outcome = await transport.send(message, recipientID: row.recipient_id, deliveryID: row.id, on: db)
            switch outcome {
            case .accepted(let reply):
                try await finish(row.id, status: Delivery.Status.sent, reply: reply, sentAt: clock.now(), on: sql)
                metrics.email(kind: row.kind, status: Delivery.Status.sent)
            case .permanent(let reason):
                try await finish(row.id, status: Delivery.Status.failed, reply: reason, on: sql)
                metrics.externalError(.smtp)
                metrics.email(kind: row.kind, status: Delivery.Status.failed)
            case .transient(let reason):
                metrics.externalError(.smtp)
                if row.attempts >= settings.maxAttempts {
                    metrics.email(kind: row.kind, status: Delivery.Status.failed)
                    try await finish(row.id, status: Delivery.Status.failed, reply: "gave up after \(row.attempts) attempts: \(reason)", on: sql)
                } else {
                    metrics.email(kind: row.kind, status: "retry")
                    let delay = Backoff(base: settings.retryBaseSeconds).delay(afterAttempt: row.attempts)
                    try await sql.update(Delivery.schema)
                        .set("status", to: SQLBind(Delivery.Status.queued)).set("run_at", to: SQLBind(clock.now().addingTimeInterval(delay)))
                        .set("last_reply", to: SQLBind(String(reason.prefix(500)))).set("locked_until", to: SQLLiteral.null)
                        .set("locked_by", to: SQLLiteral.null).set("updated_at", to: SQLBind(clock.now()))
                        .where("id", .equal, SQLBind(row.id)).run()
                }
            }
        } catch {
            // The lease expires and another pass picks the row up again.
            logger.error("delivery bookkeeping failed", metadata: ["delivery": "\(row.id)", "error": "\(String(reflecting: type(of: error)))"])
        }
    }

    private func finish(_ id: Int64, status: String, reply: String, sentAt: Date? = nil, on sql: any SQLDatabase) async throws {
        try await outcomes.record(.init(id: id, status: status, reply: reply, sentAt: sentAt), on: sql)
    }

    func compose(_ row: Row) -> MailMessage {
        let creatorZone = row.creator_tz ?? "UTC"
        let memberZone = row.recipient_tz ?? creatorZone
        let streamURL = "\(settings.frontendURL)/live/\(row.stream_id)"
        let unsubscribeURL = "\(settings.publicBaseURL)/api/unsubscribe/"
            + unsubscribe.token(member: row.recipient_id, creator: row.creator_id, memberUID: row.recipient_uid)
        let event = CalendarEvent(
            uid: "\(row.stream_id)@\(calendarHost)", sequence: row.schedule_revision,
            start: row.start_time, end: row.start_time.addingTimeInterval(3600), summary: "\(row.title) — \(row.creator_name)",
            description: [row.description, "Join: \(streamURL)"].compactMap { $0 }.joined(separator: "\n\n"), url: streamURL, stamp: clock.now())
        let kind = NotificationKind(rawValue: row.kind)
        let invite: MailMessage.Calendar.Method? = switch kind {
        case .scheduled, .rescheduled: .publish
        case .cancelled: .cancel
        default: nil
        }
        // Everything but the recipient's own values is the same for the whole notice: prepared once.
        let shared: [String: String?] = [
            "googleCalendarURL": invite == .publish ? GoogleCalendar.link(event) : nil,
            "creatorName": row.creator_name,
            "title": row.title,
            "workoutType": row.workout_type,
            "streamURL": streamURL,
            "startCreatorZone": TimeFormatting.format(row.start_time, zoneID: creatorZone),
        ]
        let values: [String: String?] = [
            "unsubscribeURL": unsubscribeURL,
            "previousStartMemberZone": row.previous_start_time.map { TimeFormatting.format($0, zoneID: memberZone) },
            "memberName": row.recipient_name,
            "startMemberZone": TimeFormatting.format(row.start_time, zoneID: memberZone),
            "memberZone": memberZone,
        ]
        let rendered = templates.prepare(kind: row.kind, shared: shared).map { templates.render($0, values: values) }
            ?? EmailTemplates.Rendered(subject: row.title, text: row.title, html: HTML.escape(row.title))
        return MailMessage(
            from: settings.from, to: [MailAddress(row.recipient_email, name: row.recipient_name)],
            subject: rendered.subject, text: rendered.text, html: rendered.html,
            calendar: invite.map { .init(method: $0, ics: event.ics(method: $0), filename: "stream.ics") },
            headers: MailMessage.Header.listUnsubscribe(unsubscribeURL),
            messageID: "d\(row.id).a\(row.attempts).\(UUID().uuidString.prefix(8).lowercased())@\(messageDomain)", date: clock.now())
    }
}

extension DeliverySender.Row {
    /// Whether the stream is still in the state this kind of email is about.
    var streamStillWants: Bool {
        switch NotificationKind(rawValue: kind) {
        case .liveNow: is_live && is_cancelled == 0
        case .scheduled, .reminder, .rescheduled: !is_live && has_ended == 0 && is_cancelled == 0
        case .cancelled: is_cancelled == 1
        case nil: false
        }
    }
}

/// "Add to Google Calendar": the event-template URL Google documents for calendar links.
enum GoogleCalendar {
    static func link(_ e: CalendarEvent) -> String {
        var c = URLComponents(string: "https://calendar.google.com/calendar/render")!
        c.queryItems = [
            .init(name: "action", value: "TEMPLATE"), .init(name: "text", value: e.summary),
            .init(name: "dates", value: CalendarEvent.utc(e.start) + "/" + CalendarEvent.utc(e.end)),
            .init(name: "details", value: e.description), .init(name: "location", value: e.url),
        ]
        // URLComponents leaves "+" alone, which Google would read as a space.
        c.percentEncodedQuery = c.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        return c.string!
    }
}
