import FluentKit
import SQLKit

/// `replay_verified`: the replay URL was checked to exist in our bucket (or came from our own
/// cloud recording). An unverified URL (an allowed external origin) never replaces a verified one.
struct AddReplayVerified: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("streams").field("replay_verified", .bool, .required, .sql(.default(false))).update()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("streams").deleteField("replay_verified").update()
    }
}
