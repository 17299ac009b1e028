import FluentKit
import SQLKit

/// `went_live_at`: tells a paused stream (went live, off air for now) from a scheduled one, so a
/// stream that already ran is never treated as upcoming again. Streams that were live or ended
/// before this migration went live at their start time.
struct AddStreamWentLive: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("streams").field("went_live_at", .datetime).update()
        try await db.sql.raw("""
            UPDATE streams SET went_live_at = start_time WHERE is_live = \(bind: true) OR end_time IS NOT NULL
            """).run()
        // Rows left live *and* ended by the old stop/status race are ended.
        try await db.sql.raw("UPDATE streams SET is_live = \(bind: false) WHERE end_time IS NOT NULL OR cancelled_at IS NOT NULL").run()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("streams").deleteField("went_live_at").update()
    }
}
