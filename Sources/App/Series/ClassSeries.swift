import Fluent
import Foundation

/// Whether a series still produces classes.
enum SeriesState: String, Codable, Sendable {
    case active, ended
}

/// A weekly class series (issue 19). Its occurrences are ordinary streams (`streams.series_id`,
/// `occurrence_date`), materialised on a rolling horizon. "This and following" edits split a
/// series: the old one gets an end date, the new one (`previous_series_id`) takes over the
/// upcoming occurrences.
final class ClassSeries: Model, @unchecked Sendable {
    static let schema = "series"

    @ID(custom: "id", generatedBy: .user) var id: String?
    @Parent(key: "creator_id") var creator: User
    @Field(key: "title") var title: String
    @OptionalField(key: "description") var details: String?
    @OptionalField(key: "workout_type") var workoutType: String?
    @OptionalField(key: "thumbnail") var thumbnail: String?
    @Field(key: "timezone") var timezone: String
    @Field(key: "start_date") var startDate: String
    @Field(key: "local_time") var localTime: String
    @Field(key: "duration_minutes") var durationMinutes: Int
    /// "MO,WE"
    @Field(key: "by_day") var byDay: String
    @Field(key: "interval") var interval: Int
    @OptionalField(key: "until_date") var untilDate: String?
    @OptionalField(key: "count") var count: Int?
    /// Dates with no class (skips and cancelled occurrences: the feed's EXDATEs), "2026-12-24,…".
    @Field(key: "skipped_dates") var skippedDates: String
    @Field(key: "stage_policy") var stagePolicy: StagePolicy
    @OptionalField(key: "capacity") var capacity: Int?
    @Field(key: "state") var state: SeriesState
    /// Bumped by every series-level change (the series emails' revision, the feed's SEQUENCE);
    /// a split's new series continues its predecessor's count.
    @Field(key: "revision") var revision: Int
    @OptionalField(key: "previous_series_id") var previousSeriesID: String?
    @OptionalField(key: "ended_at") var endedAt: Date?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?

    init() {}

    var rule: SeriesRule {
        Self.rule(zone: timezone, start: LocalDate(startDate) ?? LocalDate(dayNumber: 0), time: LocalTime(localTime) ?? LocalTime("00:00")!,
                  byDay: byDay, interval: interval, until: untilDate, count: count)
    }

    var skipped: Set<LocalDate> { Self.dates(skippedDates) }

    /// The rule from the stored columns (also read straight from SQL by the email sender).
    static func rule(zone: String, start: LocalDate, time: LocalTime, byDay: String, interval: Int, until: String?, count: Int?) -> SeriesRule {
        SeriesRule(zoneID: zone, startDate: start, time: time, byDay: byDay.split(separator: ",").compactMap { Weekday(rawValue: String($0)) },
                   interval: interval, until: until.flatMap(LocalDate.init), count: count)
    }

    /// "2026-12-24,2026-12-31" → dates.
    static func dates(_ stored: String) -> Set<LocalDate> { Set(stored.split(separator: ",").compactMap { LocalDate(String($0)) }) }

    static func encode(_ dates: Set<LocalDate>) -> String { dates.sorted().map(\.description).joined(separator: ",") }
}
