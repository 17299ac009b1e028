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
    @Field(key: "kind") var kind: String
    @Field(key: "agora_rule_id") var agoraRuleID: Int64
    init() {}
}

struct CreateModeration: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(StreamBlock.schema).id()
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("expires_at", .datetime).field("created_at", .datetime)
            .unique(on: "stream_id", "user_id", name: "stream_blocks_pair_key").create()
        try await db.schema(StreamMute.schema).id()
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("created_at", .datetime)
            .unique(on: "stream_id", "user_id", name: "stream_mutes_pair_key").create()
        try await db.schema(CreatorBan.schema).id()
            .field("creator_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("created_at", .datetime)
            .unique(on: "creator_id", "user_id", name: "creator_bans_pair_key").create()
        try await db.schema(KickingRule.schema).id()
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("user_id", .string, .required)
            .field("kind", .string, .required)
            .field("agora_rule_id", .int64, .required)
            .unique(on: "stream_id", "user_id", "kind", name: "kicking_rules_key").create()
    }
    func revert(on db: any Database) async throws {
        for s in [KickingRule.schema, CreatorBan.schema, StreamMute.schema, StreamBlock.schema] { try await db.schema(s).delete() }
    }
}

enum Moderation {
    static let blockedError = APIError(.forbidden, "blocked", "You are blocked from this stream")
    static let mutedError = APIError(.forbidden, "muted", "You are muted in this stream: join as a subscriber")
}
