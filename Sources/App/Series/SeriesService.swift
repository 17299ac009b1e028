import Fluent
import Foundation
import SQLKit
import Vapor

/// A new series, validated by the caller.
struct SeriesDraft: Sendable {
    var title: String
    var details: String?
    var workoutType: String?
    var thumbnail: String?
    var rule: SeriesRule
    var durationMinutes: Int
    var stagePolicy: StagePolicy = .hostOnly
    var capacity: Int? = nil
}

/// A "this and following" edit; nil leaves a field as it is (`.some(nil)` clears it).
struct SeriesEdits: Sendable {
    var title: String?
    var details: String??
    var workoutType: String??
    var thumbnail: String??
    var time: LocalTime?
    var durationMinutes: Int?
    var zoneID: String?
    var byDay: [Weekday]?
    var interval: Int?
    /// A new end: an until date or a count (setting one clears the other).
    var until: LocalDate??
    var count: Int??

    var changesSchedule: Bool { time != nil || zoneID != nil || byDay != nil || interval != nil || until != nil || count != nil }
}

/// Weekly class series: creating one, keeping its occurrences materialised on a rolling horizon,
/// "this and following" edits (splits), skipped dates, ending, and RSVPs to a whole series.
///
/// Occurrences are ordinary streams (tokens, reminders, moderation, RSVPs, cancel and edit of one
/// occurrence all work as for single streams). What differs is the email: a series-level change
/// sends one notice per member (`series_scheduled`, `series_changed`, `series_ended`, anchored
/// on an occurrence for the deliveries' uniqueness), never one per occurrence; occurrences added
/// by the rolling horizon send nothing (the series announcement covered them); each occurrence
/// still gets its reminder and live-now emails.
///
/// Every series-level change is one conditional write on the series row (`revision` or `state`
/// in the WHERE), in the same transaction as the occurrences it touches and the notice it
/// queues; the horizon top-up takes the same row with the revision it read, so it never adds
/// occurrences of a rule an edit has just replaced.
struct SeriesService: Sendable {
    let clock: AppClock
    let reminders: Reminders
    let jobs: JobQueue

    /// Occurrences exist this many days ahead (topped up daily).
    static let horizonDays = 56
    /// Dates a skip may name: up to two years ahead.
    static let maxSkipAheadDays = 730

    static let notFound = APIError.notFound("series_not_found", "Series not found")
    static let endedError = APIError(.conflict, "series_ended", "This series has ended")
    static let busyError = APIError(.conflict, "series_busy", "The series changed during the request; try again")

    // MARK: Finding

    func series(_ id: String, on db: any Database) async throws -> ClassSeries {
        guard !id.isEmpty, id.utf8.count <= 64, let series = try await ClassSeries.find(id, on: db) else { throw Self.notFound }
        return series
    }

    /// The series if `callerID` created it (404 unknown, 403 someone else's).
    func owned(_ id: String, by callerID: String, on db: any Database) async throws -> ClassSeries {
        let series = try await series(id, on: db)
        guard series.$creator.id == callerID else { throw APIError.forbidden("Only the series' creator can do this") }
        return series
    }

    /// The series' occurrences, by start time (`upcomingOnly`: not yet started or cancelled).
    /// `startingAfter`: only classes that have not reached their start time.
    func occurrences(of seriesID: String, upcomingOnly: Bool, startingAfter: Date? = nil, limit: Int = 200, on db: any Database) async throws -> [LiveStream] {
        var q = LiveStream.query(on: db).filter(\.$seriesID == seriesID)
        if upcomingOnly { q = q.filter(state: .scheduled) }
        if let startingAfter { q = q.filter(\.$startTime > startingAfter) }
        return try await q.sort(\.$startTime).sort(\.$id).limit(limit).all()
    }

    // MARK: Creating and materialising

    func create(_ draft: SeriesDraft, by creator: User, on db: any Database) async throws -> (series: ClassSeries, occurrences: [LiveStream]) {
        let now = clock.now()
        let series = ClassSeries()
        series.id = LiveStream.newID()
        series.$creator.id = try creator.requireID()
        series.title = draft.title
        series.details = draft.details
        series.workoutType = draft.workoutType
        series.thumbnail = draft.thumbnail
        apply(draft.rule, to: series)
        series.durationMinutes = draft.durationMinutes
        series.skippedDates = ""
        series.stagePolicy = draft.stagePolicy
        series.capacity = draft.capacity
        series.state = .active
        series.revision = 0
        guard Self.upcomingDates(of: draft.rule, skipped: [], now: now).first != nil else {
            throw APIError.validation("The series has no class after now: check startDate, until and count")
        }
        let created: [LiveStream] = try await db.writeTransaction { tx in
            try await series.create(on: tx)
            let created = try await materialize(series, now: now, on: tx)
            guard let anchor = created.first else { throw APIError.validation("The series has no class after now") }
            try await FanOut.enqueue(.init(streamId: anchor.id!, kind: .seriesScheduled, revision: series.revision), again: false, queue: jobs, on: tx)
            try await scheduleTopUp(now: now, on: tx)
            return created
        }
        return (series, created)
    }

    /// The rule's dates from today, in order, that are not skipped and start after `now`.
    static func upcomingDates(of rule: SeriesRule, skipped: Set<LocalDate>, now: Date, horizonDays: Int = horizonDays) -> [LocalDate] {
        let today = LocalDate(now, in: rule.zone)
        // At least the first class, however far ahead the series starts.
        let through = max(today.adding(days: horizonDays), rule.firstDate ?? today)
        return rule.dates(through: through).filter { !skipped.contains($0) && rule.instant(on: $0) > now }
    }

    /// Creates the occurrences of the horizon that do not exist yet (idempotent: the UNIQUE
    /// (series_id, occurrence_date) index decides), with their reminders and the series' RSVPs.
    /// Returns the new ones. Run inside the caller's transaction.
    func materialize(_ series: ClassSeries, now: Date, on tx: any Database) async throws -> [LiveStream] {
        guard series.state == .active, let seriesID = series.id else { return [] }
        let rule = series.rule
        struct Row: Decodable { let occurrence_date: String? }
        let existing = Set(try await tx.sql.raw("SELECT occurrence_date FROM streams WHERE series_id = \(bind: seriesID)")
            .all(decoding: Row.self).compactMap(\.occurrence_date))
        let holders = try await SeriesRSVP.holders(seriesID, on: tx.sql)
        var created: [LiveStream] = []
        for date in Self.upcomingDates(of: rule, skipped: series.skipped, now: now) where !existing.contains(date.description) {
            let stream = LiveStream()
            let id = LiveStream.newID()
            stream.id = id
            stream.agoraChannelId = id
            stream.title = series.title
            stream.details = series.details
            stream.workoutType = series.workoutType
            stream.thumbnail = series.thumbnail
            stream.startTime = rule.instant(on: date)
            stream.isLive = false
            stream.viewerCount = 0
            stream.replayVerified = false
            stream.stagePolicy = series.stagePolicy
            stream.capacity = series.capacity
            stream.reminderSent = false
            stream.scheduleRevision = 0
            stream.$creator.id = series.$creator.id
            stream.seriesID = seriesID
            stream.occurrenceDate = date.description
            stream.durationMinutes = series.durationMinutes
            struct Inserted: Decodable { let id: String }
            let inserted = try await tx.sql.insert(into: LiveStream.schema)
                .columns("id", "title", "description", "workout_type", "thumbnail", "start_time", "is_live", "replay_verified", "stage_policy",
                         "capacity", "agora_channel_id", "viewer_count", "reminder_sent", "schedule_revision", "creator_id", "series_id",
                         "occurrence_date", "duration_minutes", "created_at", "updated_at")
                .values(SQLBind(id), SQLBind(stream.title), SQLBind(stream.details), SQLBind(stream.workoutType), SQLBind(stream.thumbnail),
                        SQLBind(stream.startTime), SQLBind(false), SQLBind(false), SQLBind(stream.stagePolicy.rawValue), SQLBind(stream.capacity),
                        SQLBind(id), SQLBind(0), SQLBind(false), SQLBind(0), SQLBind(series.$creator.id), SQLBind(seriesID),
                        SQLBind(date.description), SQLBind(series.durationMinutes), SQLBind(now), SQLBind(now))
                .ignoringConflicts(with: ["series_id", "occurrence_date"])
                .returning("id").all(decoding: Inserted.self)
            guard !inserted.isEmpty else { continue }
            stream.createdAt = now
            stream.updatedAt = now
            stream.$id.exists = true
            try await reminders.schedule(stream, on: tx)
            try await SeriesRSVP.seat(holders, stream: id, capacity: series.capacity, now: now, on: tx.sql)
            // The host platform hears of every class (members get the series email instead).
            try await WebhookOutbox.stream(.streamScheduled, stream, now: now, on: tx)
            created.append(stream)
        }
        return created
    }

    /// The daily top-up: every active series gets the occurrences its horizon now reaches. Each
    /// series in its own transaction, taking the series row at the revision it read (an edit
    /// that committed meanwhile wins; the next top-up uses the new rule).
    @discardableResult
    func topUp(on db: any Database) async throws -> Int {
        let now = clock.now()
        var total = 0
        var cursor = ""
        while true {
            let page = try await ClassSeries.query(on: db).filter(\.$state == .active).filter(\.$id > cursor).sort(\.$id).limit(100).all()
            guard let last = page.last?.id else { return total }
            cursor = last
            for series in page {
                total += try await db.writeTransaction { tx in
                    guard try await lock(series, now: now, on: tx) else { return 0 }
                    return try await materialize(series, now: now, on: tx).count
                }
            }
        }
    }

    static let topUpPrefix = "series_topup:"
    struct TopUpPayload: Codable, Sendable { let day: String }

    /// Queues the top-up job for the next UTC day (one per day, whoever enqueues it first).
    func scheduleTopUp(now: Date, on db: any Database) async throws {
        let tomorrow = LocalDate(now, in: TimeZone(identifier: "UTC")!).adding(days: 1)
        let runAt = Date(timeIntervalSince1970: TimeInterval(tomorrow.dayNumber * 86_400 + 600))
        try await jobs.enqueue(kind: .seriesTopUp, key: Self.topUpPrefix + tomorrow.description, payload: TopUpPayload(day: tomorrow.description),
                               runAt: runAt, maxAttempts: 20, replace: .never, on: db)
    }

    /// The job: tops up, then queues tomorrow's.
    func topUpJob(_ job: Job, on db: any Database) async throws -> Worker.JobResult {
        try await topUp(on: db)
        try await scheduleTopUp(now: clock.now(), on: db)
        return .done
    }

    // MARK: Series-level changes

    /// "This and following" from `from` (default: today in the series' zone). When nothing of
    /// the series before `from` has happened or is still planned, the series itself changes;
    /// otherwise it splits: the old series ends the day before, a new one carries the change.
    /// Upcoming occurrences from `from` move to the new rule (same stream ids, so links and RSVPs
    /// stay) or are cancelled when the new rule has no class that day; new dates are added.
    /// Members get one `series_changed` email.
    func edit(_ series: ClassSeries, from requested: LocalDate?, _ edits: SeriesEdits, on db: any Database)
        async throws -> (series: ClassSeries, split: Bool, occurrences: [LiveStream]) {
        guard series.state == .active else { throw Self.endedError }
        let now = clock.now()
        let old = series.rule
        let today = LocalDate(now, in: old.zone)
        if let requested, requested < today { throw APIError.validation("from must be today or later (in the series' timezone)") }
        let from = max(requested ?? today, old.startDate)
        if let last = old.lastDate, from > last { throw APIError.validation("The series has no class on or after \(from)") }
        let seriesID = try series.requireID()

        var rule = old
        rule.startDate = from
        if let t = edits.time { rule.time = t }
        if let z = edits.zoneID { rule.zoneID = z }
        if let d = edits.byDay { rule.byDay = d }
        if let i = edits.interval { rule.interval = i }
        else if old.interval > 1 {
            // Every other (n-th) week keeps its phase: start in the first in-phase week from `from`.
            let weeks = (from.adding(days: -from.weekday.index).dayNumber - old.startDate.adding(days: -old.startDate.weekday.index).dayNumber) / 7
            let behind = weeks % old.interval
            if behind != 0 { rule.startDate = from.adding(days: -from.weekday.index + 7 * (old.interval - behind)) }
        }
        if let until = edits.until { rule.until = until; rule.count = nil }
        if let count = edits.count { rule.count = count; rule.until = nil }
        if edits.until == nil, edits.count == nil, let count = old.count {
            // The classes left of the old count.
            let done = from > old.startDate ? old.dates(through: from.adding(days: -1)).count : 0
            guard count - done > 0 else { throw APIError.validation("The series has no class on or after \(from)") }
            rule.count = count - done
        }
        if let until = rule.until, until < from { throw APIError.validation("until must not be before from") }
        let duration = edits.durationMinutes ?? series.durationMinutes
        let skipped = series.skipped.filter { $0 >= from }
        guard Self.upcomingDates(of: rule, skipped: skipped, now: now).first != nil else {
            throw APIError.validation("The changed series would have no class after now")
        }

        let newRule = rule
        return try await db.writeTransaction { tx in
            let rule = newRule
            struct N: Decodable { let n: Int }
            let kept = try await tx.sql.raw("""
                SELECT COUNT(*) AS n FROM streams WHERE series_id = \(bind: seriesID) AND occurrence_date < \(bind: from.description)
                  AND cancelled_at IS NULL
                """).first(decoding: N.self)?.n ?? 0
            let split = kept > 0
            let target: ClassSeries
            if split {
                // The old series ends the day before `from` (or where it ended anyway).
                let end = min(from.adding(days: -1), old.lastDate ?? from.adding(days: -1))
                let newID = LiveStream.newID()
                guard try await conditionalUpdate(series, on: tx, {
                    $0.set("until_date", to: SQLBind(end.description)).set("count", to: SQLLiteral.null)
                }) else { throw Self.busyError }
                target = ClassSeries()
                target.id = newID
                target.$creator.id = series.$creator.id
                target.stagePolicy = series.stagePolicy
                target.capacity = series.capacity
                target.state = .active
                target.revision = series.revision + 2
                target.previousSeriesID = seriesID
                Self.merge(edits, into: target, from: series)
                apply(rule, to: target)
                target.durationMinutes = duration
                target.skippedDates = ClassSeries.encode(skipped)
                try await target.create(on: tx)
                // RSVPs to the whole series carry over.
                try await tx.sql.raw("""
                    INSERT INTO series_rsvps (series_id, user_id, created_at)
                    SELECT \(bind: newID), user_id, created_at FROM series_rsvps WHERE series_id = \(bind: seriesID)
                    """).run()
            } else {
                let fresh = ClassSeries()
                Self.merge(edits, into: fresh, from: series)
                guard try await conditionalUpdate(series, on: tx, {
                    $0.set("title", to: SQLBind(fresh.title)).set("description", to: SQLBind(fresh.details))
                        .set("workout_type", to: SQLBind(fresh.workoutType)).set("thumbnail", to: SQLBind(fresh.thumbnail))
                        .set("timezone", to: SQLBind(rule.zoneID)).set("start_date", to: SQLBind(rule.startDate.description))
                        .set("local_time", to: SQLBind(rule.time.description)).set("by_day", to: SQLBind(Self.days(rule.byDay)))
                        .set("interval", to: SQLBind(rule.interval)).set("until_date", to: SQLBind(rule.until?.description))
                        .set("count", to: SQLBind(rule.count)).set("duration_minutes", to: SQLBind(duration))
                        .set("skipped_dates", to: SQLBind(ClassSeries.encode(skipped)))
                }) else { throw Self.busyError }
                guard let reloaded = try await ClassSeries.find(seriesID, on: tx) else { throw Self.notFound }
                target = reloaded
            }
            // Upcoming occurrences from `from`: onto the new rule, or cancelled.
            let upcoming = try await LiveStream.query(on: tx).filter(\.$seriesID == seriesID).filter(state: .scheduled)
                .filter(\.$occurrenceDate >= from.description).all()
            for stream in upcoming {
                guard let date = stream.occurrenceDate.flatMap(LocalDate.init) else { continue }
                let start = rule.instant(on: date)
                if rule.contains(date), !skipped.contains(date), start > now {
                    try await move(stream, to: target, start: start, now: now, on: tx)
                } else {
                    try await cancelSilently([stream], now: now, on: tx)
                }
            }
            _ = try await materialize(target, now: now, on: tx)
            let occurrences = try await occurrences(of: target.id!, upcomingOnly: true, on: tx)
            if let anchor = occurrences.first {
                try await FanOut.enqueue(.init(streamId: anchor.id!, kind: .seriesChanged, revision: target.revision), again: false, queue: jobs, on: tx)
            }
            return (target, split, occurrences)
        }
    }

    /// No classes on `dates` (a vacation): the occurrences on those dates are cancelled and
    /// members get one `series_changed` email listing the dates off. Dates must be the series'.
    func skip(_ series: ClassSeries, dates: [LocalDate], on db: any Database) async throws -> (series: ClassSeries, cancelled: Int) {
        guard series.state == .active else { throw Self.endedError }
        let now = clock.now()
        let rule = series.rule
        let today = LocalDate(now, in: rule.zone)
        for date in dates {
            guard date >= today, date <= today.adding(days: Self.maxSkipAheadDays) else {
                throw APIError.validation("dates must be from today to two years ahead (\(date) is not)")
            }
            guard rule.contains(date) else { throw APIError.validation("\(date) is not a date of this series") }
        }
        let fresh = Set(dates).subtracting(series.skipped)
        guard !fresh.isEmpty else { return (series, 0) }
        let seriesID = try series.requireID()
        return try await db.writeTransaction { tx in
            guard try await conditionalUpdate(series, on: tx, {
                $0.set("skipped_dates", to: SQLBind(ClassSeries.encode(series.skipped.union(fresh))))
            }) else { throw Self.busyError }
            let hit = try await LiveStream.query(on: tx).filter(\.$seriesID == seriesID).filter(state: .scheduled)
                .filter(\.$occurrenceDate ~~ fresh.map(\.description)).all()
            try await cancelSilently(hit, now: now, on: tx)
            guard let updated = try await ClassSeries.find(seriesID, on: tx) else { throw Self.notFound }
            let anchor = try await occurrences(of: seriesID, upcomingOnly: true, limit: 1, on: tx).first
                ?? hit.sorted { $0.startTime < $1.startTime }.first
            if let anchor {
                try await FanOut.enqueue(.init(streamId: anchor.id!, kind: .seriesChanged, revision: updated.revision), again: false, queue: jobs, on: tx)
            }
            return (updated, hit.count)
        }
    }

    /// Ends the series: its upcoming occurrences are cancelled (a live one carries on) and
    /// members get one `series_ended` email. Idempotent (409 only if it was never active).
    func end(_ series: ClassSeries, on db: any Database) async throws -> (series: ClassSeries, cancelled: Int, alreadyEnded: Bool) {
        let seriesID = try series.requireID()
        let now = clock.now()
        return try await db.writeTransaction { tx in
            struct Kept: Decodable { let last: String? }
            let last = try await tx.sql.raw("""
                SELECT MAX(occurrence_date) AS last FROM streams WHERE series_id = \(bind: seriesID) AND cancelled_at IS NULL
                  AND \(StreamState.any(of: [.live, .paused, .ended]))
                """).first(decoding: Kept.self)?.last
            let start = series.rule.startDate
            // The feed keeps the classes that happened; a series ended before its first class ends before it starts.
            let until = last ?? start.adding(days: -1).description
            struct Row: Decodable { let id: String }
            let ended = try await tx.sql.update(ClassSeries.schema)
                .set("state", to: SQLBind(SeriesState.ended.rawValue)).set("ended_at", to: SQLBind(now))
                .set("until_date", to: SQLBind(until)).set("count", to: SQLLiteral.null)
                .set("revision", to: SQLQueryString("revision + 1")).set("updated_at", to: SQLBind(now))
                .where("id", .equal, SQLBind(seriesID)).where("state", .equal, SQLBind(SeriesState.active.rawValue))
                .returning("id").all(decoding: Row.self)
            guard !ended.isEmpty, let updated = try await ClassSeries.find(seriesID, on: tx) else {
                return (try await self.series(seriesID, on: tx), 0, true)
            }
            let upcoming = try await occurrences(of: seriesID, upcomingOnly: true, limit: 10_000, on: tx)
            try await cancelSilently(upcoming, now: now, on: tx)
            if let anchor = upcoming.first {
                try await FanOut.enqueue(.init(streamId: anchor.id!, kind: .seriesEnded, revision: updated.revision), again: false, queue: jobs, on: tx)
            }
            return (updated, upcoming.count, false)
        }
    }

    /// A single occurrence was cancelled (the stream endpoints): its date becomes an EXDATE.
    static func occurrenceCancelled(_ stream: LiveStream, on tx: any Database) async throws {
        guard let seriesID = stream.seriesID, let date = stream.occurrenceDate.flatMap(LocalDate.init),
              let series = try await ClassSeries.find(seriesID, on: tx) else { return }
        var skipped = series.skipped
        guard skipped.insert(date).inserted else { return }
        try await tx.sql.update(ClassSeries.schema).set("skipped_dates", to: SQLBind(ClassSeries.encode(skipped)))
            .where("id", .equal, SQLBind(seriesID)).run()
    }

    // MARK: RSVPs to a whole series

    struct SeatAnswer: Sendable { let stream: LiveStream; let state: RSVP.State }

    /// Records the RSVP for future occurrences and takes a place in each upcoming one.
    func rsvp(_ series: ClassSeries, user: String, on db: any Database) async throws -> [SeatAnswer] {
        guard series.state == .active else { throw Self.endedError }
        let seriesID = try series.requireID()
        let now = clock.now()
        try await db.sql.insert(into: SeriesRSVP.schema).columns("series_id", "user_id", "created_at")
            .values(SQLBind(seriesID), SQLBind(user), SQLBind(now)).ignoringConflicts(with: ["series_id", "user_id"]).run()
        var answers: [SeatAnswer] = []
        for stream in try await occurrences(of: seriesID, upcomingOnly: true, startingAfter: now, on: db) {
            answers.append(.init(stream: stream, state: try await RSVP.take(stream: stream, user: user, now: now, on: db)))
        }
        return answers
    }

    /// Withdraws from the series and every upcoming occurrence; returns who was promoted where.
    func cancelRSVP(_ series: ClassSeries, user: String, on db: any Database) async throws -> (removed: Bool, promoted: [(LiveStream, String)]) {
        let seriesID = try series.requireID()
        struct Row: Decodable { let user_id: String }
        let removed = try await db.sql.raw("""
            DELETE FROM series_rsvps WHERE series_id = \(bind: seriesID) AND user_id = \(bind: user) RETURNING user_id
            """).all(decoding: Row.self)
        var promoted: [(LiveStream, String)] = []
        for stream in try await occurrences(of: seriesID, upcomingOnly: true, startingAfter: clock.now(), on: db) {
            let (_, who) = try await RSVP.cancel(stream: stream, user: user, now: clock.now(), on: db)
            if let who { promoted.append((stream, who)) }
        }
        return (!removed.isEmpty, promoted)
    }

    // MARK: Helpers

    private func apply(_ rule: SeriesRule, to series: ClassSeries) {
        series.timezone = rule.zoneID
        series.startDate = rule.startDate.description
        series.localTime = rule.time.description
        series.byDay = Self.days(rule.byDay)
        series.interval = rule.interval
        series.untilDate = rule.until?.description
        series.count = rule.count
    }

    static func days(_ days: [Weekday]) -> String { days.sorted { $0.index < $1.index }.map(\.rawValue).joined(separator: ",") }

    private static func merge(_ edits: SeriesEdits, into target: ClassSeries, from series: ClassSeries) {
        target.title = edits.title ?? series.title
        target.details = edits.details ?? series.details
        target.workoutType = edits.workoutType ?? series.workoutType
        target.thumbnail = edits.thumbnail ?? series.thumbnail
    }

    /// Takes the series row at the revision it was read with (the top-up's lock).
    private func lock(_ series: ClassSeries, now: Date, on tx: any Database) async throws -> Bool {
        struct Row: Decodable { let id: String }
        return !(try await tx.sql.update(ClassSeries.schema).set("revision", to: SQLQueryString("revision"))
            .where("id", .equal, SQLBind(try series.requireID())).where("revision", .equal, SQLBind(series.revision))
            .where("state", .equal, SQLBind(SeriesState.active.rawValue))
            .returning("id").all(decoding: Row.self)).isEmpty
    }

    /// One conditional write: applies `set` and bumps the revision if the series is still active
    /// at the revision it was read with.
    private func conditionalUpdate(_ series: ClassSeries, on tx: any Database, _ set: (SQLUpdateBuilder) -> SQLUpdateBuilder) async throws -> Bool {
        struct Row: Decodable { let id: String }
        return !(try await set(tx.sql.update(ClassSeries.schema))
            .set("revision", to: SQLQueryString("revision + 1")).set("updated_at", to: SQLBind(clock.now()))
            .where("id", .equal, SQLBind(try series.requireID())).where("revision", .equal, SQLBind(series.revision))
            .where("state", .equal, SQLBind(SeriesState.active.rawValue))
            .returning("id").all(decoding: Row.self)).isEmpty
    }

    /// An upcoming occurrence onto `target`'s fields and a new start (same stream id).
    private func move(_ stream: LiveStream, to target: ClassSeries, start: Date, now: Date, on tx: any Database) async throws {
        let moved = start != stream.startTime
        let previous = stream.startTime
        var update = tx.sql.update(LiveStream.schema)
            .set("series_id", to: SQLBind(target.id!)).set("title", to: SQLBind(target.title))
            .set("description", to: SQLBind(target.details)).set("workout_type", to: SQLBind(target.workoutType))
            .set("thumbnail", to: SQLBind(target.thumbnail)).set("duration_minutes", to: SQLBind(target.durationMinutes))
            .set("updated_at", to: SQLBind(now))
        if moved {
            update = update.set("start_time", to: SQLBind(start)).set("reminder_sent", to: SQLBind(false))
                .set("schedule_revision", to: SQLQueryString("schedule_revision + 1"))
        }
        try await update.where("id", .equal, SQLBind(stream.id!)).where(StreamState.any(of: [.scheduled])).run()
        if moved {
            stream.startTime = start
            try await reminders.schedule(stream, on: tx)
            try await WebhookOutbox.stream(.streamRescheduled, stream, now: now, on: tx, previousStart: previous)
        }
    }

    /// Cancels occurrences without their own cancellation emails (the series notice covers them).
    private func cancelSilently(_ streams: [LiveStream], now: Date, on tx: any Database) async throws {
        for stream in streams {
            try await tx.sql.update(LiveStream.schema).set("cancelled_at", to: SQLBind(now)).set("updated_at", to: SQLBind(now))
                .set("schedule_revision", to: SQLQueryString("schedule_revision + 1"))
                .where("id", .equal, SQLBind(stream.id!)).where(StreamState.any(of: [.scheduled])).run()
            try await reminders.cancel(stream.id!, on: tx)
            stream.cancelledAt = now
            try await WebhookOutbox.stream(.streamCancelled, stream, now: now, on: tx)
        }
    }
}

/// RSVPs to a whole series: a place in each occurrence, now and as the horizon adds them.
enum SeriesRSVP {
    static let schema = "series_rsvps"

    static func holders(_ seriesID: String, on sql: any SQLDatabase) async throws -> [String] {
        struct Row: Decodable { let user_id: String }
        return try await sql.raw("""
            SELECT r.user_id FROM series_rsvps r JOIN users u ON u.id = r.user_id
            WHERE r.series_id = \(bind: seriesID) AND u.is_active = \(bind: true) ORDER BY r.created_at, r.user_id
            """).all(decoding: Row.self).map(\.user_id)
    }

    /// Places in a new occurrence for the series' RSVPs, in the order they came (the first
    /// `capacity` confirmed, the rest waitlisted). The stream is new, so nobody else holds one yet.
    static func seat(_ holders: [String], stream: String, capacity: Int?, now: Date, on sql: any SQLDatabase) async throws {
        guard !holders.isEmpty else { return }
        for (chunkStart, chunk) in stride(from: 0, to: holders.count, by: 200).map({ ($0, holders[$0..<min($0 + 200, holders.count)]) }) {
            var insert = sql.insert(into: RSVP.schema).columns("id", "stream_id", "user_id", "status", "seq", "created_at", "updated_at")
            for (offset, user) in chunk.enumerated() {
                let seq = chunkStart + offset + 1
                let status: RSVP.Status = capacity.map { seq > $0 } == true ? .waitlisted : .confirmed
                insert = insert.values(SQLBind(UUID()), SQLBind(stream), SQLBind(user), SQLBind(status.rawValue), SQLBind(seq), SQLBind(now), SQLBind(now))
            }
            try await insert.ignoringConflicts(with: ["stream_id", "user_id"]).run()
        }
    }
}
