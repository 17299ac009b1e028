import FluentKit
import SQLKit

/// Housekeeping finds old Agora notice ids by their arrival time.
struct AddHousekeepingIndexes: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.sql.create(index: "webhook_notices_received_idx").on("webhook_notices").column("received_at").run()
    }
    func revert(on db: any Database) async throws {
        try await db.sql.drop(index: "webhook_notices_received_idx").run()
    }
}
