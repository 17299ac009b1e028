import Fluent

struct CreateWebhookState: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("webhook_notices").field("notice_id", .string, .identifier(auto: false)).field("received_at", .datetime, .required).create()
        try await db.schema("channel_members").id()
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("uid", .int64, .required).field("role", .string, .required).field("client_seq", .int64, .required)
            .unique(on: "stream_id", "uid", name: "channel_members_key").create()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("channel_members").delete()
        try await db.schema("webhook_notices").delete()
    }
}
