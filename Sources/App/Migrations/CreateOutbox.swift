import Fluent
import SQLKit

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
