import Foundation
import SQLKit

/// Who gets a creator's emails: followers ∪ active subscribers, one row per person (UNION
/// dedupes by user id), active users only, never the creator. Member opt-outs (preferences,
/// unsubscribes) will filter here, in SQL, so counts and fan-outs agree.
enum Recipients {
    static func eligible(creator: String) -> SQLQueryString {
        """
        SELECT u.id AS uid FROM (
          SELECT f.follower_id AS rid FROM follows f WHERE f.followed_id = \(bind: creator)
          UNION
          SELECT s.member_id AS rid FROM subscriptions s WHERE s.creator_id = \(bind: creator) AND s.status = 'active'
        ) r JOIN users u ON u.id = r.rid
        WHERE u.is_active = \(bind: true) AND u.id <> \(bind: creator)
        """
    }

    /// Eligible members with no delivery of this kind/revision for the stream yet.
    static func countNotYetQueued(creator: String, stream: String, kind: NotificationKind, revision: Int, on sql: any SQLDatabase) async throws -> Int {
        struct Row: Decodable { let n: Int }
        let query: SQLQueryString = """
            SELECT COUNT(*) AS n FROM (\(eligible(creator: creator))) e
            WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.stream_id = \(bind: stream) AND d.kind = \(bind: kind.rawValue)
                              AND d.revision = \(bind: revision) AND d.recipient_id = e.uid)
            """
        return try await sql.raw(query).first(decoding: Row.self)?.n ?? 0
    }

    /// The next page of eligible ids after `cursor`, in id order (keyset pagination).
    static func page(creator: String, after cursor: String, limit: Int, on sql: any SQLDatabase) async throws -> [String] {
        struct Row: Decodable { let uid: String }
        let query: SQLQueryString = "SELECT e.uid FROM (\(eligible(creator: creator))) e WHERE e.uid > \(bind: cursor) ORDER BY e.uid LIMIT \(literal: limit)"
        return try await sql.raw(query).all(decoding: Row.self).map(\.uid)
    }
}
