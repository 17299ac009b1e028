import Fluent

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
