import FluentKit
import SQLKit

/// Issue 22: the viewer count moves in the same statement as the member's row. A trigger on
/// `channel_members` adds +1/−1 to `streams.viewer_count` whenever a row becomes or stops being an
/// audience member, so the NCS event's upsert alone (one autocommit statement) applies the change
/// and counts it: no transaction that holds the stream's hot row (PostgreSQL) or the database's
/// write lock (SQLite) across round trips while every other viewer's event waits behind it.
struct AddViewerCountTrigger: AsyncMigration {
    func prepare(on db: any Database) async throws {
        let sql = db.sql
        if sql.dialect.name == "postgresql" {
            try await sql.raw("""
                CREATE OR REPLACE FUNCTION channel_members_viewer_count() RETURNS trigger LANGUAGE plpgsql AS $$
                DECLARE delta integer;
                BEGIN
                  delta := (CASE WHEN NEW.role = 'audience' THEN 1 ELSE 0 END)
                         - (CASE WHEN TG_OP = 'UPDATE' AND OLD.role = 'audience' THEN 1 ELSE 0 END);
                  IF delta <> 0 THEN
                    UPDATE streams SET viewer_count = viewer_count + delta WHERE id = NEW.stream_id;
                  END IF;
                  RETURN NULL;
                END $$
                """).run()
            try await sql.raw("""
                CREATE TRIGGER channel_members_viewer_count AFTER INSERT OR UPDATE OF role ON channel_members
                FOR EACH ROW EXECUTE FUNCTION channel_members_viewer_count()
                """).run()
        } else {
            try await sql.raw("""
                CREATE TRIGGER channel_members_viewer_count_insert AFTER INSERT ON channel_members
                WHEN NEW.role = 'audience'
                BEGIN UPDATE streams SET viewer_count = viewer_count + 1 WHERE id = NEW.stream_id; END
                """).run()
            try await sql.raw("""
                CREATE TRIGGER channel_members_viewer_count_update AFTER UPDATE OF role ON channel_members
                WHEN (NEW.role = 'audience') <> (OLD.role = 'audience')
                BEGIN UPDATE streams SET viewer_count = viewer_count + (CASE WHEN NEW.role = 'audience' THEN 1 ELSE -1 END)
                      WHERE id = NEW.stream_id; END
                """).run()
        }
    }

    func revert(on db: any Database) async throws {
        let sql = db.sql
        if sql.dialect.name == "postgresql" {
            try await sql.raw("DROP TRIGGER IF EXISTS channel_members_viewer_count ON channel_members").run()
            try await sql.raw("DROP FUNCTION IF EXISTS channel_members_viewer_count()").run()
        } else {
            try await sql.raw("DROP TRIGGER IF EXISTS channel_members_viewer_count_insert").run()
            try await sql.raw("DROP TRIGGER IF EXISTS channel_members_viewer_count_update").run()
        }
    }
}
