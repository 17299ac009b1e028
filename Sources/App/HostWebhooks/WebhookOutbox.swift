import Fluent
import Foundation
import SQLKit

/// What the host platform can subscribe to.
enum WebhookEventType: String, CaseIterable, Codable, Sendable {
    case streamScheduled = "stream.scheduled", streamRescheduled = "stream.rescheduled", streamCancelled = "stream.cancelled"
    case streamLive = "stream.live", streamEnded = "stream.ended", streamViewers = "stream.viewers"
    case recordingReady = "recording.ready", notificationCompleted = "notification.completed"
    case emailBounced = "email.bounced", emailComplained = "email.complained"
}

/// A delivery's state: queued (waiting for `run_at`), sending (leased), delivered, dead (given up
/// after the retry window, or the endpoint answered 410).
enum WebhookDeliveryStatus: String, Codable, Sendable, QueueStatus {
    case queued, sending, delivered, dead
    static var active: Self { .sending }
}

/// The outbox: an event row (and one delivery per subscribed, enabled endpoint) written in the
/// same transaction as the change it reports, so an event exists exactly when the change
/// committed. Stream events carry `sequence`, counting that stream's events from 1 (written under
/// the stream row's lock, which every stream change holds); deliveries of one stream's events to
/// one endpoint go out in that order (a later one waits while an earlier one is retried).
enum WebhookOutbox {
    static let events = "webhook_events"
    static let deliveries = "webhook_deliveries"
    static let endpoints = "webhook_endpoints"

    /// The wire body: `{"data": …, "timestamp": "…Z", "type": "…"}` (sorted keys, ISO 8601 UTC).
    struct Body<D: Encodable>: Encodable {
        let type: String
        let timestamp: Date
        let data: D
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(ISO8601.string(date))
        }
        return e
    }()

    /// Records an event. `data` gets the stream's next sequence number (nil for events that are
    /// not about a stream).
    @discardableResult
    static func record<D: Encodable>(_ type: WebhookEventType, stream: String?, now: Date, on db: any Database, messageID fixedID: String? = nil,
                                     _ data: (_ sequence: Int?) -> D) async throws -> Int64? {
        let sql = db.sql
        var sequence: Int?
        if let stream {
            let last = try await sql.raw("SELECT MAX(stream_seq) AS n FROM webhook_events WHERE stream_id = \(bind: stream)").first(decoding: MaxRow.self)?.n
            sequence = (last ?? 0) + 1
        }
        // A fixed id makes the event idempotent (recorded once whoever records it first).
        let messageID = fixedID ?? "msg_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let body = String(decoding: try encoder.encode(Body(type: type.rawValue, timestamp: now, data: data(sequence))), as: UTF8.self)
        guard let id = try await sql.insert(into: events)
            .columns("message_id", "type", "stream_id", "stream_seq", "body", "created_at")
            .values(SQLBind(messageID), SQLBind(type.rawValue), SQLBind(stream), SQLBind(sequence), SQLBind(body), SQLBind(now))
            .ignoringConflicts(with: ["message_id"])
            .returning("id").first(decoding: Inserted.self)?.id else { return nil }
        try await sql.raw("""
            INSERT INTO webhook_deliveries (endpoint_id, event_id, order_key, status, attempts, run_at, created_at, updated_at)
            SELECT e.id, \(bind: id), \(bind: stream), \(bind: WebhookDeliveryStatus.queued.rawValue), 0, \(bind: now), \(bind: now), \(bind: now)
            FROM webhook_endpoints e WHERE e.enabled = \(bind: true) AND \(subscribed(endpoint: "e", type: "\(bind: type.rawValue)"))
            """).run()
        return id
    }

    private struct MaxRow: Decodable { let n: Int? }
    private struct Inserted: Decodable { let id: Int64 }

    /// Endpoints store their filter as ",a,b," ("" = every event); `type` is the event type's SQL (a bind or a column).
    static func subscribed(endpoint alias: String, type: SQLQueryString) -> SQLQueryString {
        "(\(unsafeRaw: alias).events = '' OR \(unsafeRaw: alias).events LIKE '%,' || \(type) || ',%')"
    }

    static func filter(_ types: [WebhookEventType]) -> String {
        types.isEmpty ? "" : "," + Set(types).map(\.rawValue).sorted().joined(separator: ",") + ","
    }


    // MARK: Payloads

    struct StreamData: Encodable {
        let streamId: String
        let creatorId: String
        let title: String
        let state: StreamState
        let startTime: Date
        @NullEncodable var endTime: Date?
        @NullEncodable var seriesId: String?
        /// This stream's events count from 1; receivers order by it.
        let sequence: Int?
        /// stream.rescheduled: the start before.
        @NullEncodable var previousStartTime: Date?
        /// stream.ended: creator | host_left | channel_destroyed.
        @NullEncodable var reason: String?
        /// stream.viewers and stream.ended.
        @NullEncodable var viewerCount: Int?
    }

    /// stream.viewers, at most once a minute per live stream: only the call that moves
    /// `viewers_webhook_at` (one conditional write) records it.
    /// Whether this call recorded the event (false: not live, or one went out less than a minute ago).
    @discardableResult
    static func viewers(_ streamID: String, now: Date, on db: any Database) async throws -> Bool {
        struct Row: Decodable { let id: String }
        let won = try await db.sql.raw("""
            UPDATE streams SET viewers_webhook_at = \(bind: now)
            WHERE id = \(bind: streamID) AND \(StreamState.any(of: [.live]))
              AND (viewers_webhook_at IS NULL OR viewers_webhook_at <= \(bind: now.addingTimeInterval(-60)))
            RETURNING id
            """).all(decoding: Row.self)
        guard !won.isEmpty else { return false }
        try await ChannelEvents.recount(streamID, on: db)
        guard let stream = try await LiveStream.find(streamID, on: db) else { return false }
        try await Self.stream(.streamViewers, stream, now: now, on: db, viewers: stream.viewerCount)
        return true
    }

    struct RecordingData: Encodable {
        let streamId: String
        let replayUrl: String
        /// Checked against our bucket (or recorded by us).
        let verified: Bool
        let sequence: Int?
    }

    static func recordingReady(_ s: LiveStream, now: Date, on db: any Database) async throws {
        guard let url = s.replayUrl, let id = s.id else { return }
        try await record(.recordingReady, stream: id, now: now, on: db) { RecordingData(streamId: id, replayUrl: url, verified: s.replayVerified, sequence: $0) }
    }

    struct EmailData: Encodable {
        @NullEncodable var userId: String?
        /// SHA-256 of the normalised address (never the address itself).
        let addressHash: String
        /// The stream of the email that bounced, when known.
        @NullEncodable var streamId: String?
    }

    static func emailEvent(_ type: WebhookEventType, userID: String?, addressHash: String, streamID: String?, now: Date, on db: any Database) async throws {
        try await record(type, stream: nil, now: now, on: db) { _ in EmailData(userId: userID, addressHash: addressHash, streamId: streamID) }
    }

    static func stream(_ type: WebhookEventType, _ s: LiveStream, now: Date, on db: any Database, previousStart: Date? = nil,
                       reason: String? = nil, viewers: Int? = nil) async throws {
        let id = try s.requireID()
        try await record(type, stream: id, now: now, on: db) { seq in
            StreamData(streamId: id, creatorId: s.$creator.id, title: s.title, state: s.state, startTime: s.startTime, endTime: s.endTime,
                       seriesId: s.seriesID, sequence: seq, previousStartTime: previousStart, reason: reason, viewerCount: viewers)
        }
    }
}
