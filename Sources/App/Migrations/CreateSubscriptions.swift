import Fluent
import SQLKit

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
        try await db.sql.create(index: "subscriptions_creator_idx").on("subscriptions").column("creator_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("subscriptions").delete() }
}
