import FluentKit
import SQLKit

/// Weekly class series (issue 19): the series table, streams linked to it, and RSVPs to a whole series.
struct AddSeries: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema(ClassSeries.schema)
            .field("id", .string, .identifier(auto: false))
            .field("creator_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            .field("title", .string, .required)
            .field("description", .string)
            .field("workout_type", .string)
            .field("thumbnail", .string)
            .field("timezone", .string, .required)
            .field("start_date", .string, .required)
            .field("local_time", .string, .required)
            .field("duration_minutes", .int, .required)
            .field("by_day", .string, .required)
            .field("interval", .int, .required)
            .field("until_date", .string)
            .field("count", .int)
            .field("skipped_dates", .string, .required)
            .field("stage_policy", .string, .required)
            .field("capacity", .int)
            .field("state", .string, .required)
            .field("revision", .int, .required)
            .field("previous_series_id", .string)
            .field("ended_at", .datetime)
            .field("created_at", .datetime)
            .field("updated_at", .datetime)
            .create()
        try await db.sql.create(index: "series_creator_idx").on(ClassSeries.schema).column("creator_id").column("state").run()
        // No foreign key from streams (SQLite cannot add one to an existing table); a series is
        // never deleted while its creator exists, and both go with the creator.
        // One column per ALTER (SQLite adds one at a time).
        for (name, type) in [("series_id", DatabaseSchema.DataType.string), ("occurrence_date", .string), ("duration_minutes", .int)] {
            try await db.schema(LiveStream.schema).field(FieldKey(stringLiteral: name), type).update()
        }
        try await db.sql.create(index: "streams_series_occurrence_key").unique().on(LiveStream.schema).column("series_id").column("occurrence_date").run()
        try await db.schema(SeriesRSVP.schema)
            .field("series_id", .string, .required, .references(ClassSeries.schema, "id", onDelete: .cascade))
            .field("user_id", .string, .required, .references(User.schema, "id", onDelete: .cascade))
            .field("created_at", .datetime, .required)
            .unique(on: "series_id", "user_id", name: "series_rsvps_key")
            .create()
    }
    func revert(on db: any Database) async throws {
        try await db.schema(SeriesRSVP.schema).delete()
        try await db.sql.drop(index: "streams_series_occurrence_key").run()
        for name in ["series_id", "occurrence_date", "duration_minutes"] { try await db.schema(LiveStream.schema).deleteField(FieldKey(stringLiteral: name)).update() }
        try await db.schema(ClassSeries.schema).delete()
    }
}
