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
        try await db.sql.create(index: "jobs_due_idx").on("jobs").column("status").column("run_at").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("jobs").delete() }
}
