import FluentKit
import SQLKit

/// Attendance (issue 18): every membership event Agora reported for a stream's channel, per uid
/// and clientSeq (duplicates collapse on the unique key), with the user the uid belongs to.
struct AddAttendance: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(Attendance.schema)
            .field("id", .uuid, .identifier(auto: false))
            .field("stream_id", .string, .required, .references(LiveStream.schema, "id", onDelete: .cascade))
            .field("uid", .int64, .required)
            .field("user_id", .string, .references(User.schema, "id", onDelete: .setNull))
            .field("event", .string, .required)
            .field("role", .string, .required)
            .field("client_seq", .int64, .required)
            .field("at", .datetime, .required)
            .unique(on: "stream_id", "uid", "client_seq", name: "attendance_events_key")
            .create()
        // The unique key's index serves a stream's events in (uid, clientSeq) order; history reads by user.
        try await db.sql.create(index: "attendance_events_user_idx").on(Attendance.schema).column("user_id").column("at").run()
    }
    func revert(on db: any Database) async throws { try await db.schema(Attendance.schema).delete() }
}
