import Fluent
import Foundation

/// A creator's stream (the original Prisma `Stream`; renamed to avoid Foundation.Stream).
/// Its id is also the Agora channel name.
final class LiveStream: Model, @unchecked Sendable {
    static let schema = "streams"

    @ID(custom: "id", generatedBy: .user) var id: String?
    @Field(key: "title") var title: String
    // Not `description`: that name belongs to CustomStringConvertible on models.
    @OptionalField(key: "description") var details: String?
    @OptionalField(key: "workout_type") var workoutType: String?
    @OptionalField(key: "thumbnail") var thumbnail: String?
    @Field(key: "start_time") var startTime: Date
    @OptionalField(key: "end_time") var endTime: Date?
    @Field(key: "is_live") var isLive: Bool
    @OptionalField(key: "replay_url") var replayUrl: String?
    /// The replay was checked against our bucket (or recorded by us); see `Replay`.
    @Field(key: "replay_verified") var replayVerified: Bool
    /// Who may publish (issue 18).
    @Field(key: "stage_policy") var stagePolicy: StagePolicy
    /// Places for RSVPs (nil: unlimited, anyone eligible may join).
    @OptionalField(key: "capacity") var capacity: Int?
    @Field(key: "agora_channel_id") var agoraChannelId: String
    @Field(key: "viewer_count") var viewerCount: Int
    @OptionalField(key: "recording_id") var recordingId: String?
    @OptionalField(key: "resource_id") var resourceId: String?
    @OptionalField(key: "recording_sid") var recordingSid: String?
    @Field(key: "reminder_sent") var reminderSent: Bool
    /// Bumped on every reschedule/cancel; emails about the new schedule are new deliveries.
    @Field(key: "schedule_revision") var scheduleRevision: Int
    @OptionalField(key: "cancelled_at") var cancelledAt: Date?
    /// When it first went live (nil while scheduled or if cancelled before).
    @OptionalField(key: "went_live_at") var wentLiveAt: Date?
    /// The weekly series this stream is an occurrence of (issue 19), and the rule's date for it
    /// (in the series' zone; the iCalendar RECURRENCE-ID).
    @OptionalField(key: "series_id") var seriesID: String?
    @OptionalField(key: "occurrence_date") var occurrenceDate: String?
    /// Length of the class (nil: one hour, the calendar default).
    @OptionalField(key: "duration_minutes") var durationMinutes: Int?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?
    @Parent(key: "creator_id") var creator: User

    init() {}

    /// New ids are random UUIDs: collision-resistant, unguessable, and under Agora's 64-byte channel limit.
    static func newID() -> String { UUID().uuidString.lowercased() }

    /// The state the columns describe (see `StreamState` for the transitions).
    var state: StreamState { StreamState(isLive: isLive, wentLiveAt: wentLiveAt, endTime: endTime, cancelledAt: cancelledAt) }

    var hasEnded: Bool { state == .ended }
    var isCancelled: Bool { state == .cancelled }
    /// Not started, not ended, not cancelled: the schedule may still change.
    var isUpcoming: Bool { state == .scheduled }

    /// When the class is planned to end (calendar entries).
    var plannedEnd: Date { startTime.addingTimeInterval(TimeInterval((durationMinutes ?? 60) * 60)) }
}
