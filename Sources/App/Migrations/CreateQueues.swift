import Fluent
import SQLKit

/// The queue lives in the database: `jobs` (fan-outs, and later reminders and Agora calls) and
/// `deliveries` (the email outbox). Both carry the same lease columns so one claim routine
/// serves both: status, run_at, attempts, locked_until, locked_by.
struct CreateJobs: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("jobs")
            .field("id", .int64, .identifier(auto: true))
            .field("kind", .string, .required)
            .field("key", .string, .required)
            .field("payload", .string, .required)
            .field("status", .string, .required)
            .field("run_at", .datetime, .required)
            .field("attempts", .int, .required)
            .field("max_attempts", .int, .required)
            .field("locked_until", .datetime)
            .field("locked_by", .string)
            .field("last_error", .string)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .unique(on: "key", name: "jobs_key_key")
            .create()
        try await (db as! any SQLDatabase).create(index: "jobs_due_idx").on("jobs").column("status").column("run_at").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("jobs").delete() }
}

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
        let sql = db as! any SQLDatabase
        try await sql.create(index: "deliveries_due_idx").on("deliveries").column("status").column("run_at").run()
        try await sql.create(index: "deliveries_recipient_idx").on("deliveries").column("recipient_id").run()
        // Fan-out walks a creator's followers in id order.
        try await sql.create(index: "follows_followed_follower_idx").on("follows").column("followed_id").column("follower_id").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("deliveries").delete() }
}

/// EMAIL_TRANSPORT=outbox: rendered messages kept instead of sent (development; the dev outbox page).
struct CreateOutbox: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("outbox_messages")
            .field("id", .int64, .identifier(auto: true))
            .field("delivery_id", .int64)
            .field("recipient_id", .string, .references("users", "id", onDelete: .cascade))
            .field("to_address", .string, .required)
            .field("subject", .string, .required)
            .field("raw", .string, .required)
            .field("text_body", .string, .required)
            .field("html_body", .string)
            .field("ics", .string)
            .field("created_at", .datetime, .required)
            .create()
    }
    func revert(on db: any Database) async throws { try await db.schema("outbox_messages").delete() }
}
