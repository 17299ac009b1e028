import Fluent
import Foundation
import SQLKit
import Vapor

/// "Notify me": a member's RSVP to a stream. With a capacity, the first `capacity` RSVPs are
/// confirmed and the rest wait in line (oldest first), promoted as confirmed ones leave.
enum RSVP {
    static let schema = "rsvps"

    enum Status: String, Codable, Sendable { case confirmed, waitlisted }

    struct State: Sendable, Equatable {
        let status: Status
        /// Place in the waitlist (1 = next); nil when confirmed.
        let position: Int?
    }

    static let notRegistered = APIError(.forbidden, "not_registered", "This class has limited places: RSVP first (POST /api/streams/:id/rsvp)")

    /// Takes a place (idempotent). One write transaction that locks the stream's row first
    /// (PostgreSQL: SELECT … FOR UPDATE; SQLite: BEGIN IMMEDIATE), so concurrent RSVPs cannot
    /// overbook.
    static func take(stream: LiveStream, user: String, now: Date, on db: any Database) async throws -> State {
        let id = try stream.requireID()
        return try await db.writeTransaction { tx in
            let sql = tx.sql
            // The stream's row is the lock (PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes).
            // The counts are read by the next statement, so they see every RSVP committed before the
            // lock was granted (READ COMMITTED takes a new snapshot per statement).
            struct Capacity: Decodable { let capacity: Int? }
            let lock: SQLQueryString = sql.dialect.name == "postgresql"
                ? "SELECT capacity FROM streams WHERE id = \(bind: id) FOR UPDATE" : "SELECT capacity FROM streams WHERE id = \(bind: id)"
            let capacity = try await sql.raw(lock).first(decoding: Capacity.self)?.capacity
            struct Snapshot: Decodable { let confirmed: Int; let waitlisted: Int }
            let snapshot = try await sql.raw("""
                SELECT COUNT(CASE WHEN status = \(bind: Status.confirmed.rawValue) THEN 1 END) AS confirmed,
                       COUNT(CASE WHEN status = \(bind: Status.waitlisted.rawValue) THEN 1 END) AS waitlisted
                FROM rsvps WHERE stream_id = \(bind: id)
                """).first(decoding: Snapshot.self)
            if let existing = try await state(stream: id, user: user, on: sql) { return existing }
            let full = capacity.map { (snapshot?.confirmed ?? 0) >= $0 } ?? false
            try await sql.raw("""
                INSERT INTO rsvps (id, stream_id, user_id, status, seq, created_at, updated_at)
                VALUES (\(bind: UUID()), \(bind: id), \(bind: user), \(bind: (full ? Status.waitlisted : .confirmed).rawValue),
                        (SELECT COALESCE(MAX(seq), 0) + 1 FROM rsvps WHERE stream_id = \(bind: id)), \(bind: now), \(bind: now))
                """).run()
            // A new waitlisted RSVP is last in line.
            return full ? State(status: .waitlisted, position: (snapshot?.waitlisted ?? 0) + 1) : State(status: .confirmed, position: nil)
        }
    }

    /// Gives the place up; a confirmed place goes to the first in line. Returns the promoted member.
    static func cancel(stream: LiveStream, user: String, now: Date, on db: any Database) async throws -> (removed: Bool, promoted: String?) {
        let id = try stream.requireID()
        return try await db.writeTransaction { tx in
            let sql = tx.sql
            if sql.dialect.name == "postgresql" { try await sql.raw("SELECT id FROM streams WHERE id = \(bind: id) FOR UPDATE").run() }
            struct Row: Decodable { let status: String }
            let removed = try await sql.raw("""
                DELETE FROM rsvps WHERE stream_id = \(bind: id) AND user_id = \(bind: user) RETURNING status
                """).all(decoding: Row.self)
            guard let was = removed.first else { return (false, nil) }
            guard was.status == Status.confirmed.rawValue, stream.capacity != nil else { return (true, nil) }
            struct Promoted: Decodable { let user_id: String }
            let promoted = try await sql.raw("""
                UPDATE rsvps SET status = \(bind: Status.confirmed.rawValue), updated_at = \(bind: now)
                WHERE id = (SELECT id FROM rsvps WHERE stream_id = \(bind: id) AND status = \(bind: Status.waitlisted.rawValue)
                            ORDER BY seq LIMIT 1)
                RETURNING user_id
                """).all(decoding: Promoted.self)
            return (true, promoted.first?.user_id)
        }
    }

    /// The "you're in" email to a member promoted from the waitlist.
    static func notifyPromoted(_ member: String, stream: LiveStream, now: Date, on db: any Database) async throws {
        try await db.sql.insert(into: Delivery.schema)
            .columns("stream_id", "kind", "recipient_id", "revision", "status", "run_at", "attempts", "created_at", "updated_at")
            .values(SQLBind(stream.id!), SQLBind(NotificationKind.rsvpConfirmed), SQLBind(member), SQLBind(stream.scheduleRevision),
                    SQLBind(DeliveryStatus.queued), SQLBind(now), SQLBind(0), SQLBind(now), SQLBind(now))
            .ignoringConflicts(with: ["stream_id", "kind", "recipient_id", "revision"]).run()
    }

    static func state(stream: String, user: String, on sql: any SQLDatabase) async throws -> State? {
        struct Row: Decodable { let status: String; let seq: Int }
        guard let mine = try await sql.raw("""
            SELECT status, seq FROM rsvps WHERE stream_id = \(bind: stream) AND user_id = \(bind: user)
            """).first(decoding: Row.self), let status = Status(rawValue: mine.status) else { return nil }
        guard status == .waitlisted else { return State(status: .confirmed, position: nil) }
        struct N: Decodable { let n: Int }
        let ahead = try await sql.raw("""
            SELECT COUNT(*) AS n FROM rsvps WHERE stream_id = \(bind: stream) AND status = \(bind: Status.waitlisted.rawValue)
              AND seq < \(bind: mine.seq)
            """).first(decoding: N.self)?.n ?? 0
        return State(status: .waitlisted, position: ahead + 1)
    }

    struct Counts: Content { let confirmed: Int; let waitlisted: Int; @NullEncodable var capacity: Int? }

    static func counts(stream: String, capacity: Int?, on sql: any SQLDatabase) async throws -> Counts {
        struct Row: Decodable { let status: String; let n: Int }
        let rows = try await sql.raw("SELECT status, COUNT(*) AS n FROM rsvps WHERE stream_id = \(bind: stream) GROUP BY status").all(decoding: Row.self)
        let by = Dictionary(rows.map { ($0.status, $0.n) }, uniquingKeysWith: +)
        return Counts(confirmed: by[Status.confirmed.rawValue] ?? 0, waitlisted: by[Status.waitlisted.rawValue] ?? 0, capacity: capacity)
    }

    /// Confirmed members of a stream (the token rule of capacity-limited classes).
    static func confirmed(stream: String, on sql: any SQLDatabase) async throws -> Set<String> {
        struct Row: Decodable { let user_id: String }
        return Set(try await sql.raw("""
            SELECT user_id FROM rsvps WHERE stream_id = \(bind: stream) AND status = \(bind: Status.confirmed.rawValue)
            """).all(decoding: Row.self).map(\.user_id))
    }
}
