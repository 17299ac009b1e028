import Fluent
import SQLKit

struct CreateDeliveries: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("deliveries")
            .field("id", .int64, .identifier(auto: true))
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("kind", .string, .required)
            .field("recipient_id", .string, .required, .references("users", "id", onDelete: .cascade))
            .field("revision", .int, .required)
            .field("status", .string, .required)
            .field("run_at", .datetime, .required)
            .field("attempts", .int, .required)
            .field("locked_until", .datetime)
            .field("locked_by", .string)
            .field("last_reply", .string)
            .field("sent_at", .datetime)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .unique(on: "stream_id", "kind", "recipient_id", "revision", name: "deliveries_once_key")
            .create()
        let sql = db.sql
        try await sql.create(index: "deliveries_due_idx").on("deliveries").column("status").column("run_at").run()
        try await sql.create(index: "deliveries_recipient_idx").on("deliveries").column("recipient_id").run()
        // Fan-out walks a creator's followers in id order.
        try await sql.create(index: "follows_followed_follower_idx").on("follows").column("followed_id").column("follower_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("deliveries").delete() }
}
