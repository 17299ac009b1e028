import Vapor

struct CreateStreamRequest: Content {
    let creatorId: String
    let title: String
    let description: String?
    let workoutType: String?
    let thumbnail: String?
    let startTime: String?
    let isScheduled: Bool
    /// host_only (default) | invite | open.
    let stagePolicy: String?
    /// Places for RSVPs (1–100000); absent: unlimited.
    let capacity: Int?
}

struct CreateStreamResponse: Content {
    struct Body: Content {
        let id: String
        let title: String
        let agoraChannelId: String
        let agoraToken: String
        let agoraUid: UInt32
        let startTime: Date
        let isLive: Bool
    }
    var success = true
    let stream: Body
    let message: String
}

struct StopStreamRequest: Content {
    let streamId: String?
    let replayUrl: String?
}

struct UpdateStatusRequest: Content {
    let isLive: Bool
}

struct UpdateStreamRequest: Content {
    let title: String?
    let description: String?
    let workoutType: String?
    let thumbnail: String?
    let startTime: String?
    /// Also while live: host_only | invite | open.
    let stagePolicy: String?
}

struct UpdateStreamResponse: Content {
    var success = true
    let stream: StreamSummary
    let message: String
}

struct MessageResponse: Content {
    var success = true
    let message: String
}

/// A stream as clients see it everywhere (schedule, edits); `StreamDetails` adds the page's fields.
struct StreamSummary: Content {
    let id: String
    let title: String
    @NullEncodable var description: String?
    @NullEncodable var workoutType: String?
    @NullEncodable var thumbnail: String?
    let startTime: Date
    @NullEncodable var endTime: Date?
    let isLive: Bool
    /// Present (null unless cancelled); cancelled streams are listed only with includeCancelled=true.
    @NullEncodable var cancelledAt: Date?
    /// scheduled, live, paused, ended or cancelled (`StreamState`).
    let state: StreamState
    /// The weekly series this stream is an occurrence of (null for a single stream).
    @NullEncodable var seriesId: String?

    init(_ s: LiveStream) {
        (id, title, description, workoutType, thumbnail, startTime, endTime, isLive, cancelledAt, state, seriesId) =
            (s.id ?? "", s.title, s.details, s.workoutType, s.thumbnail, s.startTime, s.endTime, s.isLive, s.cancelledAt, s.state, s.seriesID)
    }

    init(_ r: ScheduledStreamsResponse.Row) {
        (id, title, description, workoutType, thumbnail, startTime, endTime, isLive, cancelledAt, seriesId) =
            (r.id, r.title, r.description, r.workout_type, r.thumbnail, r.start_time, r.end_time, r.is_live, r.cancelled_at, r.series_id)
        state = StreamState(isLive: r.is_live, wentLiveAt: r.went_live_at, endTime: r.end_time, cancelledAt: r.cancelled_at)
    }
}

/// A stream's page: the summary's fields, then viewers, replay, creator and (in /api/me/upcoming)
/// the start in the caller's zone — one JSON object.
struct StreamDetails: Content {
    let summary: StreamSummary
    let viewerCount: Int
    @NullEncodable var replayUrl: String?
    let creator: Creator
    /// Only in /api/me/upcoming: the start in the caller's zone.
    @NullEncodable var startTimeLocal: String?
    /// Who may publish: host_only, invite or open.
    let stagePolicy: StagePolicy
    /// RSVP counts and capacity (GET /api/streams/:id; null in lists).
    @NullEncodable var rsvps: RSVP.Counts?
    struct Creator: Content { let id: String; let name: String }

    init(_ s: LiveStream, creator: User, local: String? = nil, rsvps: RSVP.Counts? = nil) {
        summary = StreamSummary(s)
        stagePolicy = s.stagePolicy
        self.rsvps = rsvps
        viewerCount = s.viewerCount
        replayUrl = s.replayUrl
        self.creator = Creator(id: creator.id!, name: creator.name)
        startTimeLocal = local
    }

    private enum Keys: String, CodingKey { case viewerCount, replayUrl, creator, startTimeLocal, stagePolicy, rsvps }

    func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(viewerCount, forKey: .viewerCount)
        try c.encode(replayUrl, forKey: .replayUrl)
        try c.encode(creator, forKey: .creator)
        try c.encode(startTimeLocal, forKey: .startTimeLocal)
        try c.encode(stagePolicy, forKey: .stagePolicy)
        try c.encode(rsvps, forKey: .rsvps)
    }

    init(from decoder: any Decoder) throws {
        summary = try StreamSummary(from: decoder)
        let c = try decoder.container(keyedBy: Keys.self)
        viewerCount = try c.decode(Int.self, forKey: .viewerCount)
        replayUrl = try c.decodeIfPresent(String.self, forKey: .replayUrl)
        creator = try c.decode(Creator.self, forKey: .creator)
        startTimeLocal = try c.decodeIfPresent(String.self, forKey: .startTimeLocal)
        stagePolicy = try c.decode(StagePolicy.self, forKey: .stagePolicy)
        rsvps = try c.decodeIfPresent(RSVP.Counts.self, forKey: .rsvps)
    }
}

struct ScheduledStreamsResponse: Content {
    /// The columns the schedule reads, straight from SQL.
    struct Row: Decodable, Sendable {
        let id: String
        let title: String
        let description: String?
        let workout_type: String?
        let thumbnail: String?
        let start_time: Date
        let end_time: Date?
        let is_live: Bool
        let went_live_at: Date?
        let cancelled_at: Date?
        let series_id: String?
    }
    var success = true
    let streams: [StreamSummary]
}
