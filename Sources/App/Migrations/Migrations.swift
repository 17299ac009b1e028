import Fluent
import SQLKit

/// Every migration, in order. New ones are appended, never reordered.
enum Migrations {
    static let all: [any AsyncMigration] = [
        CreateUsers(), CreateFollows(), CreateSubscriptions(), CreateStreams(),
        CreateJobs(), CreateDeliveries(), CreateOutbox(), CreatePreferences(),
        AddStreamSchedule(), CreateModeration(), CreateWebhookState(),
    ]
}

struct CreateUsers: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("users")
            .field("id", .string, .identifier(auto: false))
            .field("name", .string, .required)
            .field("email", .string, .required)
            .field("timezone", .string)
            .field("role", .string, .required)
            .field("is_active", .bool, .required)
            .field("agora_uid", .int64, .required)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .unique(on: "agora_uid", name: "users_agora_uid_key")
            .create()
    }
    func revert(on db: any Database) async throws { try await db.schema("users").delete() }
}

struct CreateFollows: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("follows")
            .id()
            .field("follower_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("followed_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("created_at", .datetime)
            .unique(on: "follower_id", "followed_id", name: "follows_pair_key")
            .create()
        // Recipient lookups go by the creator being followed.
        try await (db as! any SQLDatabase).create(index: "follows_followed_idx").on("follows").column("followed_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("follows").delete() }
}

struct CreateSubscriptions: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("subscriptions")
            .id()
            .field("member_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("creator_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("status", .string, .required)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .unique(on: "member_id", "creator_id", name: "subscriptions_pair_key")
            .create()
        try await (db as! any SQLDatabase).create(index: "subscriptions_creator_idx").on("subscriptions").column("creator_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("subscriptions").delete() }
}

struct CreateStreams: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("streams")
            .field("id", .string, .identifier(auto: false))
            .field("title", .string, .required)
            .field("description", .string)
            .field("workout_type", .string)
            .field("thumbnail", .string)
            .field("start_time", .datetime, .required)
            .field("end_time", .datetime)
            .field("is_live", .bool, .required)
            .field("replay_url", .string)
            .field("agora_channel_id", .string, .required)
            .field("viewer_count", .int, .required)
            .field("recording_id", .string)
            .field("resource_id", .string)
            .field("recording_sid", .string)
            .field("reminder_sent", .bool, .required)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .field("creator_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .create()
        try await (db as! any SQLDatabase).create(index: "streams_creator_start_idx").on("streams")
            .column("creator_id").column("start_time").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("streams").delete() }
}
