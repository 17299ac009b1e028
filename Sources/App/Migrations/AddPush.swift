import FluentKit
import SQLKit

/// Push notifications (issue 21): devices, push switches in the preferences, push deliveries.
struct AddPush: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(Devices.schema)
            .field("id", .uuid, .identifier(auto: false))
            .field("user_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            .field("platform", .string, .required)
            .field("token", .string, .required)
            .field("app_version", .string)
            .field("locale", .string)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .unique(on: "platform", "token", name: "devices_token_key")
            .create()
        try await db.sql.create(index: "devices_user_idx").on(Devices.schema).column("user_id").run()
        // Push on for live-now and reminders by default; one ALTER per column (SQLite).
        for (column, on) in [("push_live_now", true), ("push_reminder", true), ("push_scheduled", false), ("push_rescheduled", false), ("push_cancelled", false)] {
            try await db.schema(NotificationPreference.schema).field(FieldKey(stringLiteral: column), .bool, .required, .sql(.default(on))).update()
        }
        try await db.schema(PushDelivery.schema)
            .field("id", .int64, .identifier(auto: true))
            .field("stream_id", .string, .required, .references(LiveStream.schema, "id", onDelete: .cascade))
            .field("kind", .string, .required)
            .field("recipient_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            // Kept after the device is removed (the outcome stays countable).
            .field("device_id", .uuid, .required)
            .field("channel", .string, .required)
            .field("revision", .int, .required)
            .field("status", .string, .required)
            .field("attempts", .int, .required)
            .field("run_at", .datetime, .required)
            .field("locked_by", .string)
            .field("locked_until", .datetime)
            .field("last_reply", .string)
            .field("sent_at", .datetime)
            .field("created_at", .datetime, .required)
            .field("updated_at", .datetime, .required)
            .unique(on: "stream_id", "kind", "device_id", "revision", name: "push_deliveries_key")
            .create()
        try await db.sql.create(index: "push_deliveries_due_idx").on(PushDelivery.schema).column("status").column("run_at").run()
    }
    func revert(on db: any Database) async throws {
        try await db.schema(PushDelivery.schema).delete()
        for column in ["push_live_now", "push_reminder", "push_scheduled", "push_rescheduled", "push_cancelled"] {
            try await db.schema(NotificationPreference.schema).deleteField(FieldKey(stringLiteral: column)).update()
        }
        try await db.schema(Devices.schema).delete()
    }
}
