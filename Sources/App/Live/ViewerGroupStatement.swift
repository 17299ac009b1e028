import FluentKit
import FluentPostgresDriver
import Foundation
import PostgresNIO

/// A group of viewers' changes on PostgreSQL as one prepared statement (see `ChannelEvents.applyGroup`):
/// data-modifying CTEs insert the notices (the new ones come back), and from the new ones only their
/// attendance rows and per member the newest change (applied only when newer). The group travels
/// as arrays, so the text is the same for every group size: PostgreSQL parses it once per
/// connection and, after a few runs, plans it once — an unprepared statement paid ~0.4 ms of
/// parsing and planning per group, about half its cost.
struct ViewerGroupStatement: PostgresPreparedStatement {
    typealias Row = String

    static let sql = """
        WITH c AS (SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::int8[],
                                        $9::timestamptz[])
                   AS c (notice_id, attendance_id, member_id, stream_id, uid, event, role, client_seq, at)),
        n AS (INSERT INTO webhook_notices (notice_id, received_at) SELECT notice_id, $10::timestamptz FROM c
              ON CONFLICT (notice_id) DO NOTHING RETURNING notice_id),
        f AS (SELECT c.* FROM c JOIN n ON n.notice_id = c.notice_id),
        a AS (INSERT INTO attendance_events (id, stream_id, uid, user_id, event, role, client_seq, at)
              SELECT attendance_id, stream_id, uid, (SELECT id FROM users WHERE agora_uid = f.uid), event, role, client_seq, at FROM f
              ON CONFLICT (stream_id, uid, client_seq) DO NOTHING),
        m AS (INSERT INTO channel_members (id, stream_id, uid, role, client_seq)
              SELECT DISTINCT ON (stream_id, uid) member_id, stream_id, uid, role, client_seq FROM f ORDER BY stream_id, uid, client_seq DESC
              ON CONFLICT (stream_id, uid) DO UPDATE SET role = excluded.role, client_seq = excluded.client_seq
              WHERE channel_members.client_seq < excluded.client_seq)
        SELECT notice_id FROM n
        """

    var notices: [String] = [], attendanceIDs: [UUID] = [], memberIDs: [UUID] = [], streams: [String] = [], uids: [Int64] = []
    var events: [String] = [], roles: [String] = [], clientSeqs: [Int64] = [], times: [Date] = []
    let now: Date

    /// `changes` name each notice once (the caller keeps the first of a notice sent twice in one group).
    init(_ changes: [ChannelEvents.ViewerChange], now: Date) {
        self.now = now
        for c in changes {
            let r = c.record
            notices.append(c.notice); attendanceIDs.append(RandomID.uuid()); memberIDs.append(RandomID.uuid())
            streams.append(r.stream); uids.append(r.uid); events.append(r.event.rawValue); roles.append(r.role.rawValue)
            clientSeqs.append(r.clientSeq); times.append(r.at)
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 10)
        b.append(notices); b.append(attendanceIDs); b.append(memberIDs); b.append(streams); b.append(uids)
        b.append(events); b.append(roles); b.append(clientSeqs); b.append(times); b.append(now)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws -> String { try row.decode(String.self) }

    /// The notices of this group that were new.
    func run(on db: any PostgresDatabase, logger: Logger) async throws -> Set<String> {
        Set(try await db.all(self, prepared: true, logger: logger))
    }
}
