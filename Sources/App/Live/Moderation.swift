import Fluent
import Foundation
import SQLKit
import Vapor

/// Blocks (per stream, optionally timed), creator-wide bans and mutes. The local lists are the
/// source of truth, enforced at token issuance; Agora kicking rules (when configured) only make
/// the effect immediate for someone already in the channel.
final class StreamBlock: Model, @unchecked Sendable {
    static let schema = "stream_blocks"
    @ID(key: .id) var id: UUID?
    @Field(key: "stream_id") var streamID: String
    @Field(key: "user_id") var userID: String
    @OptionalField(key: "expires_at") var expiresAt: Date?
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    init() {}
}

final class StreamMute: Model, @unchecked Sendable {
    static let schema = "stream_mutes"
    @ID(key: .id) var id: UUID?
    @Field(key: "stream_id") var streamID: String
    @Field(key: "user_id") var userID: String
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    init() {}
}

final class CreatorBan: Model, @unchecked Sendable {
    static let schema = "creator_bans"
    @ID(key: .id) var id: UUID?
    @Field(key: "creator_id") var creatorID: String
    @Field(key: "user_id") var userID: String
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    init() {}
}

/// Agora kicking-rule ids we created, so unblock/unmute can delete them.
final class KickingRule: Model, @unchecked Sendable {
    static let schema = "kicking_rules"
    @ID(key: .id) var id: UUID?
    @Field(key: "stream_id") var streamID: String
    @Field(key: "user_id") var userID: String
    @Field(key: "kind") var kind: ModerationKind
    @Field(key: "agora_rule_id") var agoraRuleID: Int64
    init() {}
}

enum Moderation {
    static let blockedError = APIError(.forbidden, "blocked", "You are blocked from this stream")
    static let mutedError = APIError(.forbidden, "muted", "You are muted in this stream: join as a subscriber")
}
