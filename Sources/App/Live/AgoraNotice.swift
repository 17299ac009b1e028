/// Agora Notification Center event types this service acts on (agora.md §8).
enum AgoraProduct: Int, Sendable {
    case rtc = 1
    case cloudRecording = 3
}

/// RTC channel events (productId 1).
enum ChannelEventType: Int, Sendable {
    case channelCreated = 101, channelDestroyed = 102
    case broadcasterJoined = 103, broadcasterLeft = 104, audienceJoined = 105, audienceLeft = 106
    case becameBroadcaster = 111, becameAudience = 112

    /// The member's role in the channel after this event (nil: not a membership event).
    var roleAfter: ChannelRole? {
        switch self {
        case .broadcasterJoined, .becameBroadcaster: .broadcaster
        case .audienceJoined, .becameAudience: .audience
        case .broadcasterLeft, .audienceLeft: ChannelRole.none
        case .channelCreated, .channelDestroyed: nil
        }
    }
}

/// Where a uid is in a channel, as stored in `channel_members.role`.
enum ChannelRole: String, Codable, Sendable {
    case broadcaster, audience, none
}

/// Cloud Recording events (productId 3).
enum RecordingEventType: Int, Sendable {
    /// File infos (4) and uploaded (31): the replay files exist.
    case fileInfos = 4, uploaded = 31
    /// The recording session exited.
    case sessionExited = 11
}
