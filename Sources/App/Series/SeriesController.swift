import Fluent
import SQLKit
import Vapor

/// The creator's series endpoints (thin: `SeriesService` does the work) and members' RSVPs to a
/// whole series. Single occurrences are edited and cancelled through the stream endpoints.
struct SeriesController: RouteCollection {
    let service: SeriesService
    let lifecycle: StreamLifecycle
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        let creator = routes.grouped("creator", "series")
        creator.post(use: create)
        creator.get(use: list)
        creator.get(":seriesId", use: details)
        creator.patch(":seriesId", use: update)
        creator.post(":seriesId", "skip", use: skip)
        creator.post(":seriesId", "end", use: end)
        routes.post("series", ":seriesId", "rsvp", use: rsvp)
        routes.delete("series", ":seriesId", "rsvp", use: cancelRSVP)
    }

    // MARK: Bodies

    struct Recurrence: Content {
        let frequency: String
        let byDay: [String]
        let interval: Int?
        let until: String?
        let count: Int?
    }

    struct CreateBody: Content {
        let title: String
        let description: String?
        let workoutType: String?
        let thumbnail: String?
        let timezone: String
        let startDate: String
        let localTime: String
        let durationMinutes: Int?
        let recurrence: Recurrence
        let stagePolicy: String?
        let capacity: Int?
    }

    struct UpdateBody: Content {
        /// "This and following" from this date (default: today in the series' zone).
        let from: String?
        let title: String?
        let description: String?
        let workoutType: String?
        let thumbnail: String?
        let timezone: String?
        let localTime: String?
        let durationMinutes: Int?
        let recurrence: Recurrence?
    }

    struct SkipBody: Content { let dates: [String] }

    struct SeriesBody: Content {
        struct RecurrenceBody: Content {
            let frequency: String
            let byDay: [String]
            let interval: Int
            @NullEncodable var until: String?
            @NullEncodable var count: Int?
            /// The RFC 5545 RRULE (UNTIL in UTC), as in the calendar feed.
            let rrule: String
        }
        let id: String
        let creatorId: String
        let title: String
        @NullEncodable var description: String?
        @NullEncodable var workoutType: String?
        @NullEncodable var thumbnail: String?
        let timezone: String
        let startDate: String
        let localTime: String
        let durationMinutes: Int
        let recurrence: RecurrenceBody
        let skippedDates: [String]
        let stagePolicy: StagePolicy
        @NullEncodable var capacity: Int?
        let state: SeriesState
        let revision: Int
        @NullEncodable var previousSeriesId: String?
        @NullEncodable var endedAt: Date?
        let createdAt: Date
        let updatedAt: Date

        init(_ s: ClassSeries) {
            let rule = s.rule
            id = s.id ?? ""
            creatorId = s.$creator.id
            title = s.title
            description = s.details
            workoutType = s.workoutType
            thumbnail = s.thumbnail
            timezone = s.timezone
            startDate = s.startDate
            localTime = s.localTime
            durationMinutes = s.durationMinutes
            recurrence = RecurrenceBody(frequency: "weekly", byDay: rule.byDay.map(\.rawValue), interval: rule.interval,
                                        until: s.untilDate, count: s.count, rrule: rule.rrule)
            skippedDates = s.skipped.sorted().map(\.description)
            stagePolicy = s.stagePolicy
            capacity = s.capacity
            state = s.state
            revision = s.revision
            previousSeriesId = s.previousSeriesID
            endedAt = s.endedAt
            createdAt = s.createdAt ?? Date(timeIntervalSince1970: 0)
            updatedAt = s.updatedAt ?? createdAt
        }
    }

    struct One: Content {
        var success = true
        let series: SeriesBody
        let occurrences: [StreamSummary]
        /// PATCH only: whether the edit split the series ("this and following").
        var split: Bool? = nil
        /// skip/end only: occurrences cancelled by this call.
        var cancelled: Int? = nil
    }

    struct Many: Content { var success = true; let series: [SeriesBody] }

    // MARK: Creator endpoints

    /// POST /api/creator/series → 201 with the series and its first occurrences.
    @Sendable func create(req: Request) async throws -> Response {
        let caller = try req.caller
        let body = try req.json(CreateBody.self)
        let creator = try await lifecycle.activeCreator(caller.id, on: req.db)
        guard Validation.isValidTimeZone(body.timezone) else { throw APIError.validation("timezone must be an IANA zone id, e.g. America/New_York") }
        guard let start = LocalDate(body.startDate) else { throw APIError.validation("startDate must be a date, YYYY-MM-DD") }
        guard let time = LocalTime(body.localTime) else { throw APIError.validation("localTime must be HH:MM (24-hour), e.g. 07:30") }
        let recurrence = try Self.recurrence(body.recurrence)
        let today = LocalDate(clock.now(), in: TimeZone(identifier: body.timezone)!)
        guard start <= today.adding(days: 366) else { throw APIError.validation("startDate must be within a year") }
        if let until = recurrence.until, until < start { throw APIError.validation("recurrence.until must not be before startDate") }
        let draft = SeriesDraft(
            title: try Validation.text(body.title, field: "title", min: 1, max: 200)!,
            details: try Validation.text(body.description, field: "description", max: 5000, lines: .multi),
            workoutType: try Validation.text(body.workoutType, field: "workoutType", max: 60),
            thumbnail: try StreamController.thumbnail(body.thumbnail) ?? nil,
            rule: SeriesRule(zoneID: body.timezone, startDate: start, time: time, byDay: recurrence.byDay, interval: recurrence.interval,
                             until: recurrence.until, count: recurrence.count),
            durationMinutes: try Self.duration(body.durationMinutes) ?? 60,
            stagePolicy: try StreamController.stagePolicy(body.stagePolicy) ?? .hostOnly,
            capacity: try body.capacity.map { c in
                guard (1...100_000).contains(c) else { throw APIError.validation("capacity must be 1–100000") }
                return c
            })
        let (series, occurrences) = try await service.create(draft, by: creator, on: req.db)
        return try await One(series: SeriesBody(series), occurrences: occurrences.map(StreamSummary.init)).encodeResponse(status: .created, for: req)
    }

    /// GET /api/creator/series?includeEnded=true — the caller's series, newest first.
    @Sendable func list(req: Request) async throws -> Many {
        let caller = try req.caller
        _ = try await lifecycle.activeCreator(caller.id, on: req.db)
        var q = ClassSeries.query(on: req.db).filter(\.$creator.$id == caller.id)
        if req.query[String.self, at: "includeEnded"] != "true" { q = q.filter(\.$state == .active) }
        return Many(series: try await q.sort(\.$createdAt, .descending).sort(\.$id).limit(500).all().map(SeriesBody.init))
    }

    private func owned(_ req: Request) async throws -> ClassSeries {
        let caller = try req.caller
        let series = try await service.owned(req.parameters.get("seriesId") ?? "", by: caller.id, on: req.db)
        _ = try await lifecycle.activeCreator(caller.id, on: req.db)
        return series
    }

    /// GET /api/creator/series/:id — the series and its occurrences (past and cancelled included).
    @Sendable func details(req: Request) async throws -> One {
        let series = try await owned(req)
        let occurrences = try await service.occurrences(of: series.id!, upcomingOnly: false, limit: 500, on: req.db)
        return One(series: SeriesBody(series), occurrences: occurrences.map(StreamSummary.init))
    }

    /// PATCH /api/creator/series/:id — "this and following" from `from`.
    @Sendable func update(req: Request) async throws -> One {
        let series = try await owned(req)
        let body = try req.json(UpdateBody.self)
        var edits = SeriesEdits()
        if let title = body.title { edits.title = try Validation.text(title, field: "title", min: 1, max: 200)! }
        if let description = body.description { edits.details = .some(try Validation.text(description, field: "description", max: 5000, lines: .multi)) }
        if let workoutType = body.workoutType { edits.workoutType = .some(try Validation.text(workoutType, field: "workoutType", max: 60)) }
        edits.thumbnail = try StreamController.thumbnail(body.thumbnail)
        if let zone = body.timezone {
            guard Validation.isValidTimeZone(zone) else { throw APIError.validation("timezone must be an IANA zone id") }
            edits.zoneID = zone
        }
        if let raw = body.localTime {
            guard let time = LocalTime(raw) else { throw APIError.validation("localTime must be HH:MM (24-hour)") }
            edits.time = time
        }
        edits.durationMinutes = try Self.duration(body.durationMinutes)
        if let raw = body.recurrence {
            let r = try Self.recurrence(raw)
            edits.byDay = r.byDay
            edits.interval = r.interval
            if let until = r.until { edits.until = .some(until) } else if let count = r.count { edits.count = .some(count) }
            else { edits.until = .some(nil) }
        }
        var from: LocalDate?
        if let raw = body.from {
            guard let date = LocalDate(raw) else { throw APIError.validation("from must be a date, YYYY-MM-DD") }
            from = date
        }
        let (updated, split, occurrences) = try await service.edit(series, from: from, edits, on: req.db)
        return One(series: SeriesBody(updated), occurrences: occurrences.map(StreamSummary.init), split: split)
    }

    /// POST /api/creator/series/:id/skip {dates} — no class on these dates.
    @Sendable func skip(req: Request) async throws -> One {
        let series = try await owned(req)
        let body = try req.json(SkipBody.self)
        guard (1...100).contains(body.dates.count) else { throw APIError.validation("dates must list 1–100 dates") }
        let dates = try body.dates.map { raw in
            guard let d = LocalDate(raw) else { throw APIError.validation("dates must be YYYY-MM-DD") }
            return d
        }
        let (updated, cancelled) = try await service.skip(series, dates: dates, on: req.db)
        let occurrences = try await service.occurrences(of: updated.id!, upcomingOnly: true, on: req.db)
        return One(series: SeriesBody(updated), occurrences: occurrences.map(StreamSummary.init), cancelled: cancelled)
    }

    /// POST /api/creator/series/:id/end — idempotent.
    @Sendable func end(req: Request) async throws -> One {
        let series = try await owned(req)
        let (updated, cancelled, _) = try await service.end(series, on: req.db)
        let occurrences = try await service.occurrences(of: updated.id!, upcomingOnly: false, limit: 500, on: req.db)
        return One(series: SeriesBody(updated), occurrences: occurrences.map(StreamSummary.init), cancelled: cancelled)
    }

    // MARK: RSVPs to a whole series

    struct RSVPAnswer: Content {
        struct Seat: Content { let streamId: String; let startTime: Date; let status: RSVP.Status; @NullEncodable var position: Int? }
        var success = true
        /// The place in the next occurrence (null when none is upcoming).
        @NullEncodable var rsvp: RSVPController.Answer.Body?
        let occurrences: [Seat]
    }

    /// POST /api/series/:id/rsvp — a place in every occurrence, now and as they are added.
    @Sendable func rsvp(req: Request) async throws -> RSVPAnswer {
        let caller = try req.caller.id
        let series = try await service.series(req.parameters.get("seriesId") ?? "", on: req.db)
        // The creator always has a place (nothing is stored), as for a single stream.
        guard series.$creator.id != caller else { return RSVPAnswer(rsvp: .init(status: .confirmed, position: nil), occurrences: []) }
        guard let user = try await User.find(caller, on: req.db) else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        guard user.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        if let next = try await service.occurrences(of: series.id!, upcomingOnly: true, limit: 1, on: req.db).first {
            let moderation = try await req.deps.cache.moderation(.init(next), on: req.db)
            if let refusal = moderation.refusal(user: caller, publisher: false, now: clock.now()) { throw refusal }
        }
        let seats = try await service.rsvp(series, user: caller, on: req.db)
        return RSVPAnswer(rsvp: seats.first.map { .init(status: $0.state.status, position: $0.state.position) },
                          occurrences: seats.map { .init(streamId: $0.stream.id!, startTime: $0.stream.startTime, status: $0.state.status, position: $0.state.position) })
    }

    /// DELETE /api/series/:id/rsvp — out of the series; places freed go to the waitlists.
    @Sendable func cancelRSVP(req: Request) async throws -> RSVPController.Cancelled {
        let caller = try req.caller.id
        let series = try await service.series(req.parameters.get("seriesId") ?? "", on: req.db)
        let (removed, promoted) = try await service.cancelRSVP(series, user: caller, on: req.db)
        for (stream, member) in promoted { try await RSVP.notifyPromoted(member, stream: stream, now: clock.now(), on: req.db) }
        if !promoted.isEmpty { req.deps.wake.wake() }
        return .init(deleted: removed)
    }

    // MARK: Validation

    private static func recurrence(_ r: Recurrence) throws -> (byDay: [Weekday], interval: Int, until: LocalDate?, count: Int?) {
        guard r.frequency == "weekly" else { throw APIError.validation("recurrence.frequency must be weekly") }
        guard (1...7).contains(r.byDay.count) else { throw APIError.validation("recurrence.byDay must list 1–7 days (MO, TU, WE, TH, FR, SA, SU)") }
        let days = try r.byDay.map { raw in
            guard let d = Weekday(rawValue: raw) else { throw APIError.validation("recurrence.byDay: \(raw.prefix(8)) is not one of MO, TU, WE, TH, FR, SA, SU") }
            return d
        }
        guard Set(days).count == days.count else { throw APIError.validation("recurrence.byDay lists a day twice") }
        let interval = r.interval ?? 1
        guard (1...52).contains(interval) else { throw APIError.validation("recurrence.interval must be 1–52 (weeks)") }
        guard r.until == nil || r.count == nil else { throw APIError.validation("recurrence takes until or count, not both") }
        var until: LocalDate?
        if let raw = r.until {
            guard let d = LocalDate(raw) else { throw APIError.validation("recurrence.until must be a date, YYYY-MM-DD") }
            until = d
        }
        if let count = r.count, !(1...500).contains(count) { throw APIError.validation("recurrence.count must be 1–500") }
        return (days.sorted { $0.index < $1.index }, interval, until, r.count)
    }

    private static func duration(_ minutes: Int?) throws -> Int? {
        guard let minutes else { return nil }
        guard (5...600).contains(minutes) else { throw APIError.validation("durationMinutes must be 5–600") }
        return minutes
    }
}
