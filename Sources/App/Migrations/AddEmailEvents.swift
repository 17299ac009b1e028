import FluentKit
import Foundation
import SQLKit

/// What happens to an email after it leaves (issue 17): the provider's message id and the
/// delivery events on each delivery row, a hash of every user's address, and the suppression list.
struct AddEmailEvents: AsyncMigration {
    static let deliveryColumns: [(String, DatabaseSchema.DataType)] = [
        ("provider_message_id", .string), ("delivered_at", .datetime), ("bounced_at", .datetime), ("bounce_type", .string),
        ("complained_at", .datetime), ("opened_at", .datetime), ("clicked_at", .datetime),
    ]

    func prepare(on db: any Database) async throws {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for (name, type) in Self.deliveryColumns {
            try await db.schema(Delivery.schema).field(.definition(name: .key(.string(name)), dataType: type, constraints: [])).update()
        }
        try await db.sql.create(index: "deliveries_provider_message_idx").on(Delivery.schema).column("provider_message_id").run()
        try await db.schema(User.schema).field("email_hash", .string).update()
        try await db.sql.create(index: "users_email_hash_idx").on(User.schema).column("email_hash").run()
        struct Row: Decodable { let id: String; let email: String }
        let users = try await db.sql.select().columns("id", "email").from(User.schema).all(decoding: Row.self)
        for u in users {
            try await db.sql.update(User.schema).set("email_hash", to: SQLBind(EmailHash.of(u.email))).where("id", .equal, SQLBind(u.id)).run()
        }
        try await db.schema(Suppression.schema)
            .field("address_hash", .string, .identifier(auto: false))
            .field("user_id", .string, .references(User.schema, "id", onDelete: .setNull))
            .field("reason", .string)
            .field("soft_bounces", .int, .required)
            .field("first_soft_bounce_at", .datetime)
            .field("suppressed_at", .datetime)
            .field("updated_at", .datetime, .required)
            .create()
        try await db.sql.create(index: "email_suppressions_suppressed_idx").on(Suppression.schema).column("suppressed_at").run()
    }

    func revert(on db: any Database) async throws {
        try await db.schema(Suppression.schema).delete()
        try await db.schema(User.schema).deleteField("email_hash").update()
        for (name, _) in Self.deliveryColumns { try await db.schema(Delivery.schema).deleteField(.key(.string(name))).update() }
    }
}
