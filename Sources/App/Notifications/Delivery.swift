import Fluent
import Foundation

enum NotificationKind: String, Codable, Sendable, CaseIterable {
    case liveNow = "live_now", scheduled, reminder, rescheduled, cancelled
    /// A reminder the creator sent by hand (`notify {type: "reminder"}`): its own deliveries, so it
    /// never takes the place of the automatic one.
    case manualReminder = "manual_reminder"
    /// A waitlisted RSVP got a place (issue 19): to that member only.
    case rsvpConfirmed = "rsvp_confirmed"
    /// A weekly series (issue 19): announced, changed (edit, skipped dates), ended — one email per
    /// member for the whole series, anchored on one occurrence.
    case seriesScheduled = "series_scheduled", seriesChanged = "series_changed", seriesEnded = "series_ended"

    var isSeriesNotice: Bool { self == .seriesScheduled || self == .seriesChanged || self == .seriesEnded }

    /// The email template (a manual reminder reads like the automatic one).
    var template: String { self == .manualReminder ? NotificationKind.reminder.rawValue : rawValue }

    /// The automatic and the manual reminder.
    static let reminders: [NotificationKind] = [.reminder, .manualReminder]
    var isReminder: Bool { Self.reminders.contains(self) }

    /// Reschedule and cancel notices go to those who got the scheduled email, not the whole audience.
    var audienceIsScheduledRecipients: Bool { self == .rescheduled || self == .cancelled }

    /// Kinds that also go to members who RSVPed to the stream (follower or not): confirmed RSVPs
    /// for the reminders and live-now, every RSVP (waitlist included) for reschedules and cancels.
    var rsvpStatuses: [RSVP.Status] {
        switch self {
        case .reminder, .manualReminder, .liveNow, .rsvpConfirmed: [.confirmed]
        case .rescheduled, .cancelled, .seriesChanged, .seriesEnded: [.confirmed, .waitlisted]
        case .scheduled, .seriesScheduled: []
        }
    }
}

/// One email to one member about one stream: the outbox row. Unique per
/// (stream, kind, recipient, revision), so no fan-out can queue anyone twice.
final class Delivery: Model, @unchecked Sendable {
    static let schema = "deliveries"

    @ID(custom: "id", generatedBy: .database) var id: Int64?
    @Field(key: "stream_id") var streamID: String
    @Field(key: "kind") var kind: NotificationKind
    @Field(key: "recipient_id") var recipientID: String
    @Field(key: "revision") var revision: Int
    @Field(key: "status") var status: Status
    @Field(key: "run_at") var runAt: Date
    @Field(key: "attempts") var attempts: Int
    @OptionalField(key: "locked_until") var lockedUntil: Date?
    @OptionalField(key: "locked_by") var lockedBy: String?
    @OptionalField(key: "last_reply") var lastReply: String?
    @OptionalField(key: "sent_at") var sentAt: Date?
    @OptionalField(key: "previous_start_time") var previousStartTime: Date?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?

    init() {}

    typealias Status = DeliveryStatus
}

/// A delivery's place in the outbox: queued → sending (leased) → sent | failed | skipped;
/// a temporary failure puts it back to queued with a later run_at.
enum DeliveryStatus: String, Codable, Sendable, CaseIterable, QueueStatus {
    case queued, sending, sent, failed, skipped
    static let active = DeliveryStatus.sending
}
