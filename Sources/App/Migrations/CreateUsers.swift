import Fluent
import SQLKit

struct CreateUsers: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("users")
            .field("id", .string, .identifier(auto: false))
            .field("name", .string, .required)
            .field("email", .string, .required)
            .field("timezone", .string)
            .field("role", .string, .required)
            .field("is_active", .bool, .required)
            .field("agora_uid", .int64, .required)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .unique(on: "agora_uid", name: "users_agora_uid_key")
            .create()
    }
    func revert(on db: any Database) async throws { try await db.schema("users").delete() }
}
