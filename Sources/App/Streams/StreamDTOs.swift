import Vapor

struct CreateStreamRequest: Content {
    let creatorId: String
    let title: String
    let description: String?
    let workoutType: String?
    let thumbnail: String?
    let startTime: String?
    let isScheduled: Bool
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
}

struct UpdateStreamResponse: Content {
    var success = true
    let stream: ScheduledStreamsResponse.Item
    let message: String
}

struct MessageResponse: Content {
    var success = true
    let message: String
}

struct ScheduledStreamsResponse: Content {
    struct Item: Content {
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

        init(_ s: LiveStream) {
            (id, title, description, workoutType, thumbnail, startTime, endTime, isLive, cancelledAt) =
                (s.id ?? "", s.title, s.details, s.workoutType, s.thumbnail, s.startTime, s.endTime, s.isLive, s.cancelledAt)
        }

        init(_ r: Row) {
            (id, title, description, workoutType, thumbnail, startTime, endTime, isLive, cancelledAt) =
                (r.id, r.title, r.description, r.workout_type, r.thumbnail, r.start_time, r.end_time, r.is_live, r.cancelled_at)
        }
    }

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
        let cancelled_at: Date?
    }
    var success = true
    let streams: [Item]
}
