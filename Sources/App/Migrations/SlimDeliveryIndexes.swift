import FluentKit
import SQLKit

/// Issue 22: fewer index writes per email. A delivery is inserted (already `sending` on the fan-out's
/// fast path) and then finished; only queued and sending rows are ever looked up by status, and only
/// provider-sent rows by provider message id. Partial indexes hold just those rows, so finishing a
/// delivery (`sent`, no provider id over SMTP) adds no entry to either, and the due index stays the
/// size of the work in progress instead of every email ever sent.
struct SlimDeliveryIndexes: AsyncMigration {
    func prepare(on db: any Database) async throws {
        let sql = db.sql
        try await sql.drop(index: "deliveries_due_idx").run()
        try await sql.drop(index: "deliveries_provider_message_idx").run()
        // `=` / `OR` rather than IN: SQLite proves a query's `status = 'queued'` implies an OR predicate.
        try await sql.raw("""
            CREATE INDEX deliveries_due_idx ON deliveries (status, run_at) WHERE status = 'queued' OR status = 'sending'
            """).run()
        try await sql.raw("""
            CREATE INDEX deliveries_provider_message_idx ON deliveries (provider_message_id) WHERE provider_message_id IS NOT NULL
            """).run()
    }

    func revert(on db: any Database) async throws {
        let sql = db.sql
        try await sql.drop(index: "deliveries_due_idx").run()
        try await sql.drop(index: "deliveries_provider_message_idx").run()
        try await sql.create(index: "deliveries_due_idx").on("deliveries").column("status").column("run_at").run()
        try await sql.create(index: "deliveries_provider_message_idx").on("deliveries").column("provider_message_id").run()
    }
}
