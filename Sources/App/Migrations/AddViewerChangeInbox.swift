import FluentKit
import SQLKit

/// Issue 22: a group of viewers' changes as one SQLite statement. SQLite has no data-modifying
/// CTEs (PostgreSQL's form, `ViewerGroupStatement`), so the group is inserted into
/// `viewer_changes`, a table that never keeps a row: a row whose notice was seen before is dropped
/// (`RAISE(IGNORE)`), and every other row records its notice, its attendance row and the member's
/// change (only when newer than what is stored; `AddViewerCountTrigger` moves the count) and is
/// deleted again. `RETURNING notice_id` names the new notices. One statement is one thread-pool job
/// of SQLite's, where three statements in a transaction were seven (two busy-timeout pragmas, BEGIN,
/// the three, COMMIT), each a hop to a pool thread and back. PostgreSQL: nothing to do.
struct AddViewerChangeInbox: AsyncMigration {
    func prepare(on db: any Database) async throws {
        let sql = db.sql
        guard sql.dialect.name == "sqlite" else { return }
        // The ids and times have no declared type: they reach the target tables exactly as bound.
        try await sql.raw("""
            CREATE TABLE viewer_changes (notice_id TEXT NOT NULL, received_at NOT NULL, attendance_id NOT NULL, member_id NOT NULL,
                stream_id TEXT NOT NULL, uid INTEGER NOT NULL, event TEXT NOT NULL, role TEXT NOT NULL, client_seq INTEGER NOT NULL, at NOT NULL)
            """).run()
        try await sql.raw("""
            CREATE TRIGGER viewer_changes_seen BEFORE INSERT ON viewer_changes
            WHEN EXISTS (SELECT 1 FROM webhook_notices WHERE notice_id = NEW.notice_id)
            BEGIN SELECT RAISE(IGNORE); END
            """).run()
        try await sql.raw("""
            CREATE TRIGGER viewer_changes_apply AFTER INSERT ON viewer_changes BEGIN
              INSERT INTO webhook_notices (notice_id, received_at) VALUES (NEW.notice_id, NEW.received_at);
              INSERT INTO attendance_events (id, stream_id, uid, user_id, event, role, client_seq, at)
                VALUES (NEW.attendance_id, NEW.stream_id, NEW.uid, (SELECT id FROM users WHERE agora_uid = NEW.uid),
                        NEW.event, NEW.role, NEW.client_seq, NEW.at)
                ON CONFLICT (stream_id, uid, client_seq) DO NOTHING;
              INSERT INTO channel_members (id, stream_id, uid, role, client_seq)
                VALUES (NEW.member_id, NEW.stream_id, NEW.uid, NEW.role, NEW.client_seq)
                ON CONFLICT (stream_id, uid) DO UPDATE SET role = excluded.role, client_seq = excluded.client_seq
                WHERE channel_members.client_seq < excluded.client_seq;
              DELETE FROM viewer_changes WHERE rowid = NEW.rowid;
            END
            """).run()
    }

    func revert(on db: any Database) async throws {
        let sql = db.sql
        guard sql.dialect.name == "sqlite" else { return }
        try await sql.raw("DROP TRIGGER IF EXISTS viewer_changes_apply").run()
        try await sql.raw("DROP TRIGGER IF EXISTS viewer_changes_seen").run()
        try await sql.raw("DROP TABLE IF EXISTS viewer_changes").run()
    }
}
