import Fluent
import SQLKit

struct CreatePreferences: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(NotificationPreference.schema)
            .field("user_id", .string, .identifier(auto: false), .references("users", "id", onDelete: .cascade))
            .field("live_now", .bool, .required)
            .field("scheduled", .bool, .required)
            .field("reminder", .bool, .required)
            .field("updated_at", .datetime)
            .create()
        try await db.schema(NotificationMute.schema)
            .id()
            .field("member_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("creator_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("created_at", .datetime)
            .unique(on: "member_id", "creator_id", name: "notification_mutes_pair_key")
            .create()
    }
    func revert(on db: any Database) async throws {
        try await db.schema(NotificationMute.schema).delete()
        try await db.schema(NotificationPreference.schema).delete()
    }
}
