import Fluent
import SQLKit
import Vapor

/// GET /api/admin/suppressions (paged) and DELETE /api/admin/suppressions/:email (behind AdminAuthMiddleware).
struct SuppressionController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("suppressions", use: list)
        routes.delete("suppressions", ":email", use: remove)
    }

    struct Entry: Content {
        let addressHash: String
        let reason: String
        let suppressedAt: Date
        /// The user it was last linked to (null once that user is erased: the hash stays).
        @NullEncodable var userId: String?
        /// That user's current address, when the user still exists.
        @NullEncodable var email: String?
    }
    struct Page: Content { var success = true; let suppressions: [Entry]; @NullEncodable var nextCursor: String? }

    /// In address-hash order (stable under inserts); `cursor` is the last page's last hash.
    @Sendable func list(req: Request) async throws -> Page {
        var limit = 100
        if let raw = req.query[String.self, at: "limit"] {
            guard let n = Int(raw), (1...1000).contains(n) else { throw APIError.validation("limit must be an integer from 1 to 1000") }
            limit = n
        }
        var after: SQLQueryString = ""
        if let cursor = req.query[String.self, at: "cursor"] {
            guard cursor.utf8.count == 64, cursor.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw APIError.validation("Invalid cursor")
            }
            after = " AND es.address_hash > \(bind: cursor)"
        }
        struct Row: Decodable { let address_hash: String; let reason: String?; let suppressed_at: Date; let user_id: String?; let email: String? }
        let rows = try await req.db.sql.raw("""
            SELECT es.address_hash, es.reason, es.suppressed_at, u.id AS user_id, u.email FROM email_suppressions es
            LEFT JOIN users u ON u.id = es.user_id
            WHERE es.suppressed_at IS NOT NULL\(after) ORDER BY es.address_hash LIMIT \(literal: limit + 1)
            """).all(decoding: Row.self)
        let shown = rows.prefix(limit).map {
            Entry(addressHash: $0.address_hash, reason: $0.reason ?? Suppression.Reason.manual.rawValue, suppressedAt: $0.suppressed_at,
                  userId: $0.user_id, email: $0.email)
        }
        return Page(suppressions: Array(shown), nextCursor: rows.count > limit ? shown.last?.addressHash : nil)
    }

    struct Removed: Content { var success = true; let deleted: Bool }

    /// Takes an address off the list (e.g. after the member fixed their mailbox). Its soft-bounce
    /// count starts over.
    @Sendable func remove(req: Request) async throws -> Removed {
        let email = req.parameters.get("email") ?? ""
        guard Validation.isValidEmail(email) else { throw APIError.validation("email must be a valid address") }
        struct Row: Decodable { let address_hash: String }
        let deleted = try await req.db.sql.raw("""
            DELETE FROM email_suppressions WHERE address_hash = \(bind: EmailHash.of(email)) RETURNING address_hash
            """).all(decoding: Row.self)
        return Removed(deleted: !deleted.isEmpty)
    }
}
