import FluentKit
import SQLKit

/// RSVPs ("notify me") and an optional capacity per stream (issue 19).
struct AddRSVPs: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(LiveStream.schema).field("capacity", .int).update()
        try await db.schema(RSVP.schema)
            .field("id", .uuid, .identifier(auto: false))
            .field("stream_id", .string, .required, .references(LiveStream.schema, "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            .field("status", .string, .required)
            // The order RSVPs arrived in, per stream (the waitlist's order; timestamps can tie).
            .field("seq", .int, .required)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .unique(on: "stream_id", "user_id", name: "rsvps_key")
            .create()
        try await db.sql.create(index: "rsvps_stream_status_idx").on(RSVP.schema).column("stream_id").column("status").column("seq").run()
    }
    func revert(on db: any Database) async throws {
        try await db.schema(RSVP.schema).delete()
        try await db.schema(LiveStream.schema).deleteField("capacity").update()
    }
}
