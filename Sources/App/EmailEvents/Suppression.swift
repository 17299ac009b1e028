import Crypto
import Foundation
import SQLKit

/// The key of an address on the suppression list: SHA-256 of the trimmed, lower-cased address,
/// hex. The list keeps only this, so an erased user leaves no address behind, yet the same
/// address imported again is still suppressed.
enum EmailHash {
    static func of(_ address: String) -> String {
        let normalized = address.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return Hex.lower(SHA256.hash(data: Data(normalized.utf8)))
    }
}

/// The suppression list: addresses that hard-bounced, complained, or soft-bounced repeatedly.
/// One row per address hash; `suppressed_at` set = suppressed. Soft bounces are counted in the
/// same row and suppress at `softBounceLimit` within `softBounceWindow` (a soft bounce outside
/// the window starts a new count); a delivered email resets the count.
enum Suppression {
    static let schema = "email_suppressions"
    static let softBounceLimit = 3
    static let softBounceWindow: TimeInterval = 30 * 86_400

    enum Reason: String, Codable, Sendable, CaseIterable {
        case hardBounce = "hard_bounce", complaint, softBounces = "soft_bounces", manual
    }

    /// 1 when the address of the user row `alias` is suppressed, else 0.
    static func isSuppressed(user alias: String) -> SQLQueryString {
        """
        (CASE WHEN EXISTS (SELECT 1 FROM email_suppressions es WHERE es.address_hash = \(unsafeRaw: alias).email_hash
                           AND es.suppressed_at IS NOT NULL) THEN 1 ELSE 0 END)
        """
    }

    /// Suppresses `hash` now (idempotent; the first reason and time stay).
    static func suppress(hash: String, userID: String?, reason: Reason, now: Date, on sql: any SQLDatabase) async throws {
        try await sql.insert(into: schema)
            .columns("address_hash", "user_id", "reason", "soft_bounces", "suppressed_at", "updated_at")
            .values(SQLBind(hash), SQLBind(userID), SQLBind(reason.rawValue), SQLBind(0), SQLBind(now), SQLBind(now))
            .onConflict(with: ["address_hash"]) {
                $0.set("reason", to: SQLRaw("CASE WHEN \(schema).suppressed_at IS NULL THEN excluded.reason ELSE \(schema).reason END"))
                    .set("suppressed_at", to: SQLRaw("COALESCE(\(schema).suppressed_at, excluded.suppressed_at)"))
                    .set("user_id", to: SQLRaw("COALESCE(excluded.user_id, \(schema).user_id)"))
                    .set(excludedValueOf: "updated_at")
            }.run()
    }

    /// Counts a soft bounce; suppresses once `softBounceLimit` fall within `softBounceWindow`.
    /// Returns whether the address is now suppressed.
    @discardableResult
    static func softBounce(hash: String, userID: String?, now: Date, on sql: any SQLDatabase) async throws -> Bool {
        struct Row: Decodable { let soft_bounces: Int; let first_soft_bounce_at: Date?; let suppressed_at: Date? }
        try await sql.insert(into: schema)
            .columns("address_hash", "user_id", "soft_bounces", "first_soft_bounce_at", "updated_at")
            .values(SQLBind(hash), SQLBind(userID), SQLBind(0), SQLBind(now), SQLBind(now))
            .ignoringConflicts(with: ["address_hash"]).run()
        // One conditional write: restart the count when the window has passed, else add one.
        let windowStart = now.addingTimeInterval(-softBounceWindow)
        let rows = try await sql.raw("""
            UPDATE email_suppressions SET
              soft_bounces = CASE WHEN first_soft_bounce_at IS NULL OR first_soft_bounce_at < \(bind: windowStart) THEN 1 ELSE soft_bounces + 1 END,
              first_soft_bounce_at = CASE WHEN first_soft_bounce_at IS NULL OR first_soft_bounce_at < \(bind: windowStart) THEN \(bind: now) ELSE first_soft_bounce_at END,
              updated_at = \(bind: now)
            WHERE address_hash = \(bind: hash)
            RETURNING soft_bounces, first_soft_bounce_at, suppressed_at
            """).all(decoding: Row.self)
        guard let row = rows.first else { return false }
        if row.suppressed_at != nil { return true }
        guard row.soft_bounces >= softBounceLimit else { return false }
        try await suppress(hash: hash, userID: userID, reason: .softBounces, now: now, on: sql)
        return true
    }

    /// A delivered email: the address works, its soft-bounce count starts over.
    static func delivered(hash: String, now: Date, on sql: any SQLDatabase) async throws {
        try await sql.update(schema).set("soft_bounces", to: SQLBind(0)).set("first_soft_bounce_at", to: SQLLiteral.null)
            .set("updated_at", to: SQLBind(now))
            .where("address_hash", .equal, SQLBind(hash)).where("suppressed_at", .is, SQLLiteral.null).run()
    }
}
