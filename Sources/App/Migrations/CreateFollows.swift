import Fluent
import SQLKit

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
        try await db.sql.create(index: "follows_followed_idx").on("follows").column("followed_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("follows").delete() }
}
