import FluentKit
import SQLKit

/// Stage control (issue 18): each stream's stage policy, and who asked for / was brought on stage.
struct AddStageControl: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(LiveStream.schema).field("stage_policy", .string, .required, .sql(.default("host_only"))).update()
        try await db.schema(Stage.schema)
            .field("id", .uuid, .identifier(auto: false))
            .field("stream_id", .string, .required, .references(LiveStream.schema, "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            .field("status", .string, .required)
            .field("requested_at", .datetime)
            .field("invited_at", .datetime)
            .field("expires_at", .datetime)
            .field("removed_at", .datetime)
            .field("updated_at", .datetime, .required)
            .unique(on: "stream_id", "user_id", name: "stage_members_key")
            .create()
    }
    func revert(on db: any Database) async throws {
        try await db.schema(Stage.schema).delete()
        try await db.schema(LiveStream.schema).deleteField("stage_policy").update()
    }
}
