import Fluent
import SQLKit

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
        try await db.sql.create(index: "streams_creator_start_idx").on("streams")
            .column("creator_id").column("start_time").run()
    }
    func revert(on db: any Database) async throws { try await db.schema("streams").delete() }
}
