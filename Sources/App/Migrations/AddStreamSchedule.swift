import Fluent

/// Reschedule and cancel: a stream's schedule revision (bumped on each change, so emails about a
/// new time are new deliveries) and its cancellation; deliveries remember the time they replace.
struct AddStreamSchedule: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("streams")
            .field("schedule_revision", .int, .required, .sql(.default(0)))
            .update()
        try await db.schema("streams")
            .field("cancelled_at", .datetime)
            .update()
        try await db.schema("deliveries")
            .field("previous_start_time", .datetime)
            .update()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("deliveries").deleteField("previous_start_time").update()
        try await db.schema("streams").deleteField("cancelled_at").update()
        try await db.schema("streams").deleteField("schedule_revision").update()
    }
}
