import Fluent
import Foundation
import Logging
import Mailer
import NIOConcurrencyHelpers
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
    /// Notice memos of the notices being sent.
    private let memos = BoundedCache<NoticeKey, NoticeMemo>(limit: 64)
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

    /// What a delivery needs: its recipient (with `Audience`'s send-time answer: unfollows, cancelled
    /// subscriptions, opt-outs and deactivations take effect on the next email) and its notice's stream,
    /// creator and series — the same for every recipient, so loaded once per stream, not per email.
    /// Rows are copied several times per email (queue, task, sender): the notice travels as one
    /// shared reference, not as its 28 fields (15 of them strings).
    struct Row: Sendable {
        var recipient: Recipient
        var shared: SharedNotice
        /// Set while the row is not in the database yet (handed over by this process's fan-out, see
        /// `LocalDeliveries`): its outcome inserts it.
        var handover: LocalDeliveries.Handover? = nil
        var notice: Notice { shared.value }
        var id: Int64 { recipient.id }
        var stream_id: String { recipient.stream_id }
    }

    /// A loaded notice, shared by all its rows, with the memo of what its emails share (so an email
    /// finds it without hashing and comparing the notice; rows loaded together share one). The memo
    /// is the one sender's that filled it: a process has one sender, and rows are never handed from
    /// one sender to another with their notice.
    final class SharedNotice: Sendable {
        let value: Notice
        private let memo = NIOLockedValueBox<(kind: NotificationKind, day: Int, memo: NoticeMemo)?>(nil)
        init(_ value: Notice) { self.value = value }

        func memo(kind: NotificationKind, day: Int) -> NoticeMemo? {
            memo.withLockedValue { m in m.flatMap { $0.kind == kind && $0.day == day ? $0.memo : nil } }
        }
        func keep(_ memo: NoticeMemo, kind: NotificationKind, day: Int) { self.memo.withLockedValue { $0 = (kind, day, memo) } }
    }

    /// The delivery row and its recipient.
    struct Recipient: Decodable, Sendable {
        let id: Int64
        let kind: NotificationKind
        let attempts: Int
        let stream_id: String
        let recipient_id: String
        let recipient_name: String
        let recipient_email: String
        let recipient_tz: String?
        let recipient_active: Bool
        let recipient_uid: Int64
        let in_audience: Int
        let opted_out: Int
        let suppressed: Int
        let reminded_recently: Int
        let revision: Int
        let previous_start_time: Date?
    }

    /// The stream a notice is about, its creator and its series (nil for a single stream).
    struct Notice: Decodable, Sendable, Hashable {
        let notice_stream: String
        let schedule_revision: Int
        let is_live: Bool
        let went_live_at: Date?
        let end_time: Date?
        let cancelled_at: Date?
        let title: String
        let description: String?
        let workout_type: String?
        let start_time: Date
        let creator_id: String
        let creator_name: String
        let creator_tz: String?
        let creator_active: Bool
        let creator_role: UserRole
        let duration_minutes: Int?
        let occurrence_date: String?
        let series_id: String?
        let series_tz: String?
        let series_start: String?
        let series_time: String?
        let series_by_day: String?
        let series_interval: Int?
        let series_until: String?
        let series_count: Int?
        let series_skipped: String?
        let series_revision: Int?
        let series_duration: Int?

        /// The notices of `streams` (streams that no longer exist are absent).
        static func load(_ streams: some Collection<String>, on sql: any SQLDatabase) async throws -> [String: SharedNotice] {
            guard !streams.isEmpty else { return [:] }
            let query: SQLQueryString = """
                SELECT s.id AS notice_stream, s.schedule_revision, s.is_live, s.went_live_at, s.end_time, s.cancelled_at,
                       s.title, s.description, s.workout_type, s.start_time, s.creator_id,
                       c.name AS creator_name, c.timezone AS creator_tz, c.is_active AS creator_active, c.role AS creator_role,
                       s.duration_minutes, s.occurrence_date, s.series_id, x.timezone AS series_tz, x.start_date AS series_start,
                       x.local_time AS series_time, x.by_day AS series_by_day, x.interval AS series_interval, x.until_date AS series_until,
                       x.count AS series_count, x.skipped_dates AS series_skipped, x.revision AS series_revision,
                       x.duration_minutes AS series_duration
                FROM streams s
                JOIN users c ON c.id = s.creator_id
                LEFT JOIN series x ON x.id = s.series_id
                WHERE s.id IN (\(SQLList(Set(streams).map { SQLBind($0) })))
                """
            let rows = try await sql.raw(query).all(decoding: Notice.self)
            return Dictionary(rows.map { ($0.notice_stream, SharedNotice($0)) }, uniquingKeysWith: { a, _ in a })
        }
    }

    /// The note on a delivery skipped because its address is on the suppression list.
    static let suppressedReason = "suppressed"

    /// Claimed deliveries with their recipients (one query) and their notices (one per batch).
    func load(_ ids: [Int64], on sql: any SQLDatabase) async throws -> [Row] {
        guard !ids.isEmpty else { return [] }
        let idList = SQLList(ids.map { SQLBind($0) })
        let query: SQLQueryString = """
            SELECT d.id, d.kind, d.attempts, d.stream_id, d.recipient_id, d.revision,
                   u.name AS recipient_name, u.email AS recipient_email, u.timezone AS recipient_tz,
                   u.is_active AS recipient_active, u.agora_uid AS recipient_uid,
                   (CASE WHEN \(Audience.follows(member: "d.recipient_id", creator: "s.creator_id"))
                         OR \(Audience.hasRSVP(member: "d.recipient_id", stream: "d.stream_id", kindColumn: "d.kind")) THEN 1 ELSE 0 END) AS in_audience,
                   \(Audience.optedOut(member: "d.recipient_id", creator: SQLColumn("creator_id", table: "s"), kind: .column("d.kind"))) AS opted_out,
                   \(Audience.remindedRecently(delivery: "d", since: clock.now().addingTimeInterval(-Audience.reminderSpacing))) AS reminded_recently,
                   \(Suppression.isSuppressed(user: "u")) AS suppressed, d.previous_start_time
            FROM deliveries d
            JOIN users u ON u.id = d.recipient_id
            JOIN streams s ON s.id = d.stream_id
            WHERE d.id IN (\(idList))
            """
        let recipients = try await sql.raw(query).all(decoding: Recipient.self)
        let notices = try await Notice.load(Set(recipients.map(\.stream_id)), on: sql)
        return recipients.compactMap { r in notices[r.stream_id].map { Row(recipient: r, shared: $0) } }
    }

    /// Sends one delivery and records its outcome; false when the outcome could not be written (the
    /// row's lease expires, or its fan-out runs again, and the email is tried again).
    @discardableResult
    func process(_ row: Row, lease: Lease<DeliveryStatus>, on db: any Database) async -> Bool {
        let sql = db.sql
        let kind = row.recipient.kind.rawValue
        return await bookkeeping(row) {
            if let reason = row.skipReason {
                try await record(row, .skipped, reply: reason, on: sql)
                metrics.email(kind: kind, status: DeliveryStatus.skipped.rawValue)
                return
            }
            let message = compose(row)
            let outcome = await transport.send(message, recipientID: row.recipient.recipient_id, deliveryID: row.id, on: db)
            switch outcome {
            case .accepted(let reply, let providerID):
                try await record(row, .sent, reply: reply, sentAt: clock.now(), providerID: providerID, on: sql)
                metrics.email(kind: kind, status: DeliveryStatus.sent.rawValue)
            case .permanent(let reason):
                try await record(row, .failed, reply: reason, on: sql)
                metrics.externalError(.smtp)
                metrics.email(kind: kind, status: DeliveryStatus.failed.rawValue)
            case .transient(let reason, let retryAfter, let counts):
                metrics.externalError(.smtp)
                if counts, row.recipient.attempts >= settings.maxAttempts {
                    metrics.email(kind: kind, status: DeliveryStatus.failed.rawValue)
                    try await record(row, .failed, reply: "gave up after \(row.recipient.attempts) attempts: \(reason)", on: sql)
                } else {
                    metrics.email(kind: kind, status: "retry")
                    let backoff = Backoff(base: settings.retryBaseSeconds).delay(afterAttempt: row.recipient.attempts)
                    try await retry(row, reason: reason, after: counts ? max(backoff, retryAfter ?? 0) : (retryAfter ?? 1), counted: counts,
                                    lease: lease, on: sql)
                }
            case .paused(let reason, let retryAfter):
                // Our misconfiguration, not the recipient's: back to the queue, this attempt not counted.
                try await retry(row, reason: reason, after: retryAfter, counted: false, lease: lease, on: sql)
            }
        }
    }

    /// A handed-over email not sent (the transport is paused): queued in the database, its attempt not counted.
    func park(_ row: Row, reason: String, on db: any Database) async -> Bool {
        await bookkeeping(row) { try await queueHanded(row, reason: reason, at: clock.now(), counted: false, on: db.sql) }
    }

    /// Runs `body`; false (logged) when its write failed — the lease expires (or the fan-out runs again)
    /// and the email is picked up again.
    private func bookkeeping(_ row: Row, _ body: () async throws -> Void) async -> Bool {
        do {
            try await body()
            return true
        } catch {
            logger.error("delivery bookkeeping failed", metadata: ["delivery": "\(row.id)", "error": "\(String(reflecting: type(of: error)))"])
            return false
        }
    }

    /// A final outcome (group-committed with others); a handed-over row is inserted with it.
    private func record(_ row: Row, _ status: DeliveryStatus, reply: String, sentAt: Date? = nil, providerID: String? = nil,
                        on sql: any SQLDatabase) async throws {
        try await outcomes.record(.init(id: row.id, status: status, reply: reply, sentAt: sentAt, providerID: providerID,
                                        new: row.handover == nil ? nil : .init(row.recipient, attempts: 1, runAt: clock.now())), on: sql)
    }

    /// Back to the queue, due `after` seconds from now; `counted: false` takes the attempt back.
    private func retry(_ row: Row, reason: String, after: TimeInterval, counted: Bool, lease: Lease<DeliveryStatus>, on sql: any SQLDatabase) async throws {
        let now = clock.now()
        guard row.handover != nil else {
            try await lease.finish(row.id, status: .queued, note: ("last_reply", reason), retryAt: now.addingTimeInterval(after),
                                   uncountAttempt: !counted, now: now, on: sql)
            return
        }
        try await queueHanded(row, reason: reason, at: now.addingTimeInterval(after), counted: counted, on: sql)
    }

    /// A handed-over email's row, written queued (due `at`), with its attempt or none.
    private func queueHanded(_ row: Row, reason: String, at: Date, counted: Bool, on sql: any SQLDatabase) async throws {
        try await outcomes.record(.init(id: row.id, status: .queued, reply: reason, sentAt: nil,
                                        new: .init(row.recipient, attempts: counted ? 1 : 0, runAt: at)), on: sql)
    }

    /// What every recipient of one notice shares, worked out once per notice (not per email): the
    /// calendar event, the invite method and the templates with the shared values in place.
    struct NoticeMemo: Sendable {
        let event: CalendarEvent
        let invite: MailMessage.Calendar.Method?
        let series: SeriesCalendar.Series?
        let prepared: EmailTemplates.Prepared?
    }

    /// The memo's key: the notice as loaded (any change to the stream, creator or series is a new
    /// key) and, for the one value that reads the date (upcoming skipped dates), the UTC day.
    struct NoticeKey: Hashable, Sendable {
        let kind: NotificationKind
        let notice: Notice
        let day: Int

        /// Looked up when a row's `SharedNotice` has no memo yet (once per notice load): hashes what tells
        /// notices apart cheaply (stream, revisions); equality still compares the whole notice.
        func hash(into hasher: inout Hasher) {
            hasher.combine(kind)
            hasher.combine(day)
            hasher.combine(notice.notice_stream)
            hasher.combine(notice.schedule_revision)
            hasher.combine(notice.series_revision)
            hasher.combine(notice.start_time)
        }
    }

    private func memo(_ row: Row, now: Date) -> NoticeMemo {
        let kind = row.recipient.kind
        let day = kind == .seriesChanged ? Int(now.timeIntervalSince1970 / 86_400) : 0
        if let hit = row.shared.memo(kind: kind, day: day) { return hit }
        let n = row.notice
        let key = NoticeKey(kind: kind, notice: n, day: day)
        if let hit = memos.get(key) {
            row.shared.keep(hit, kind: kind, day: day)
            return hit
        }
        let creatorZone = n.creator_tz ?? "UTC"
        let streamURL = "\(settings.frontendURL)/live/\(n.notice_stream)"
        let series = n.seriesRule
        var event = CalendarEvent(
            uid: "\(n.notice_stream)@\(calendarHost)", sequence: n.schedule_revision,
            start: n.start_time, end: n.start_time.addingTimeInterval(TimeInterval((n.duration_minutes ?? 60) * 60)),
            summary: "\(n.title) — \(n.creator_name)",
            description: [n.description, "Join: \(streamURL)"].compactMap { $0 }.joined(separator: "\n\n"), url: streamURL, stamp: now)
        var invite: MailMessage.Calendar.Method? = switch kind {
        case .scheduled, .rescheduled, .rsvpConfirmed, .seriesScheduled, .seriesChanged, .seriesEnded: .publish
        case .cancelled: .cancel
        default: nil
        }
        if let series, let seriesID = n.series_id {
            // A series is one calendar event (RRULE); an occurrence is its RECURRENCE-ID override.
            event.uid = SeriesCalendar.uid(seriesID, host: calendarHost)
            event.tzid = series.rule.zoneID
            if kind.isSeriesNotice {
                event = SeriesCalendar.event(series, uid: event.uid, summary: event.summary, description: event.description,
                                             url: streamURL, stamp: event.stamp)
                if series.rule.lastDate.map({ last in series.rule.firstDate.map { last < $0 } ?? true }) == true { invite = .cancel }
            } else if let date = n.occurrence_date.flatMap(LocalDate.init) {
                event.recurrenceID = series.rule.instant(on: date)
                event.sequence = series.revision + n.schedule_revision
            }
        }
        // Everything but the recipient's own values is the same for the whole notice: prepared once.
        let shared: [String: String?] = [
            "googleCalendarURL": invite == .publish ? GoogleCalendar.link(event) : nil,
            "creatorName": n.creator_name,
            "title": n.title,
            "workoutType": n.workout_type,
            "streamURL": streamURL,
            "startCreatorZone": TimeFormatting.format(n.start_time, zoneID: creatorZone),
            "seriesPattern": kind.isSeriesNotice ? series?.rule.pattern(at: n.start_time) : nil,
            "seriesEnd": kind.isSeriesNotice ? series?.endWording : nil,
            "skippedDates": kind == .seriesChanged ? series?.upcomingSkips(now: now) : nil,
        ]
        let memo = NoticeMemo(event: event, invite: invite, series: series, prepared: templates.prepare(kind: kind.template, shared: shared))
        memos.put(key, memo)
        row.shared.keep(memo, kind: kind, day: day)
        return memo
    }

    func compose(_ row: Row) -> MailMessage {
        let now = clock.now()
        let notice = memo(row, now: now)
        let r = row.recipient, n = row.notice
        let creatorZone = n.creator_tz ?? "UTC"
        // A member without a zone of their own reads the creator's, labelled as the creator's.
        let memberZone = r.recipient_tz ?? creatorZone
        let unsubscribeURL = "\(settings.publicBaseURL)/api/unsubscribe/"
            + unsubscribe.token(member: r.recipient_id, creator: n.creator_id, memberUID: r.recipient_uid)
        let kind = r.kind
        let values: [String: String?] = [
            "unsubscribeURL": unsubscribeURL,
            "previousStartMemberZone": r.previous_start_time.map { TimeFormatting.format($0, zoneID: memberZone) },
            "memberName": r.recipient_name,
            "startMemberZone": TimeFormatting.format(n.start_time, zoneID: memberZone),
            "memberZone": r.recipient_tz,
            "otherZoneNote": r.recipient_tz == nil
                ? (n.creator_tz.map { "\(n.creator_name)'s timezone (\($0))" } ?? "UTC") : nil,
            "seriesPatternMember": kind.isSeriesNotice
                ? r.recipient_tz.flatMap { notice.series?.rule.memberPattern(at: n.start_time, memberZone: $0) } : nil,
            "startsIn": kind.isReminder
                ? ReminderWording.startsIn(n.start_time, now: now, zoneID: memberZone) : nil,
        ]
        let rendered = notice.prepared.map { templates.render($0, values: values) }
            ?? EmailTemplates.Rendered(subject: n.title, text: n.title, html: HTML.escape(n.title))
        return MailMessage(
            from: settings.from, to: [MailAddress(r.recipient_email, name: r.recipient_name)],
            subject: rendered.subject, text: rendered.text, html: rendered.html,
            calendar: notice.invite.map { method in
                var event = notice.event
                event.stamp = now
                return .init(method: method, ics: event.ics(method: method), filename: "stream.ics")
            },
            headers: MailMessage.Header.listUnsubscribe(unsubscribeURL),
            messageID: "d\(r.id).a\(r.attempts).\(RandomID.hex(bytes: 4))@\(messageDomain)", date: now)
    }
}

extension DeliverySender.Notice {
    /// The stream's series, as the email and its calendar file need it.
    var seriesRule: SeriesCalendar.Series? {
        guard series_id != nil, let tz = series_tz, let start = series_start.flatMap(LocalDate.init), let time = series_time.flatMap(LocalTime.init)
        else { return nil }
        let rule = ClassSeries.rule(zone: tz, start: start, time: time, byDay: series_by_day ?? "", interval: series_interval ?? 1,
                                    until: series_until, count: series_count)
        return .init(rule: rule, skipped: ClassSeries.dates(series_skipped ?? ""), revision: series_revision ?? 0,
                     durationMinutes: series_duration ?? 60)
    }

    var streamState: StreamState { StreamState(isLive: is_live, wentLiveAt: went_live_at, endTime: end_time, cancelledAt: cancelled_at) }
}

extension DeliverySender.Row {
    /// Why this email must not go out now (nil: send it). The send-time half of `Audience`'s rule.
    var skipReason: String? {
        guard User.isActiveCreator(role: notice.creator_role, isActive: notice.creator_active) else { return "creator no longer active" }
        guard recipient.recipient_active, recipient.in_audience > 0 else { return "recipient no longer eligible" }
        guard recipient.opted_out == 0 else { return "recipient opted out" }
        guard recipient.suppressed == 0 else { return DeliverySender.suppressedReason }
        // The stream changed since the row was queued (e.g. cancelled before a reminder went out).
        let kind = recipient.kind
        guard notice.streamState.wants(kind) else { return "stream no longer \(kind == .liveNow ? "live" : "upcoming")" }
        guard recipient.reminded_recently == 0 else { return "reminded of this stream within the last \(Int(Audience.reminderSpacing / 60)) minutes" }
        return nil
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
