import Foundation
import SQLKit

/// The one claim routine for every queue table (jobs, deliveries): rows that are due, or whose
/// lease expired (a crashed worker), move to the active status under this worker's lease.
/// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas never wait on or take each other's rows.
/// SQLite: the UPDATE is one write transaction, which serializes claimers on the file.
struct Lease: Sendable {
    let table: String
    /// "running" for jobs, "sending" for deliveries.
    let activeStatus: String
    let workerID: String
    let duration: TimeInterval

    struct Claimed: Decodable, Sendable {
        let id: Int64
        let attempts: Int
    }

    func claim(limit: Int, now: Date, on sql: any SQLDatabase) async throws -> [Claimed] {
        guard limit > 0 else { return [] }
        let skipLocked = sql.dialect.name == "postgresql" ? " FOR UPDATE SKIP LOCKED" : ""
        // Two index-served picks (never an OR across columns, which made PostgreSQL scan every row
        // ever queued on each claim): leases that expired first, then due rows in run_at order.
        let query: SQLQueryString = """
            WITH expired AS (
              SELECT id FROM \(ident: table) WHERE status = \(bind: activeStatus) AND locked_until < \(bind: now)
              ORDER BY locked_until LIMIT \(literal: limit)\(unsafeRaw: skipLocked)
            ), due AS (
              SELECT id FROM \(ident: table) WHERE status = 'queued' AND run_at <= \(bind: now)
              ORDER BY run_at LIMIT \(literal: limit)\(unsafeRaw: skipLocked)
            )
            UPDATE \(ident: table) SET status = \(bind: activeStatus), locked_by = \(bind: workerID),
              locked_until = \(bind: now.addingTimeInterval(duration)), attempts = attempts + 1, updated_at = \(bind: now)
            WHERE id IN (SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) picked LIMIT \(literal: limit))
            RETURNING id, attempts
            """
        return try await sql.raw(query).all(decoding: Claimed.self)
    }

    /// Extends the lease on rows this worker is still working on.
    func renew(_ ids: [Int64], now: Date, on sql: any SQLDatabase) async throws {
        for chunk in ids.chunks(of: 500) where !chunk.isEmpty {
            try await sql.update(table)
                .set("locked_until", to: SQLBind(now.addingTimeInterval(duration)))
                .where("id", .in, Array(chunk)).where("locked_by", .equal, SQLBind(workerID))
                .where("status", .equal, SQLBind(activeStatus)).run()
        }
    }

    /// Gives rows back to the queue, due now (a worker shutting down before finishing them).
    func release(_ ids: [Int64], now: Date, on sql: any SQLDatabase) async throws {
        for chunk in ids.chunks(of: 500) where !chunk.isEmpty {
            try await sql.update(table)
                .set("status", to: SQLBind("queued")).set("run_at", to: SQLBind(now))
                .set("locked_until", to: SQLLiteral.null).set("locked_by", to: SQLLiteral.null)
                .where("id", .in, Array(chunk)).where("locked_by", .equal, SQLBind(workerID))
                .where("status", .equal, SQLBind(activeStatus)).run()
        }
    }

    /// When the next row falls due (nil if nothing is waiting). Two index-served lookups, not one
    /// aggregate over every queued row: the worker asks after each pass, with 100k rows queued.
    func nextDue(on sql: any SQLDatabase) async throws -> Date? {
        struct Row: Decodable { let due: Date? }
        let queued: SQLQueryString = """
            SELECT run_at AS due FROM \(ident: table) WHERE status = 'queued' ORDER BY run_at LIMIT 1
            """
        let leased: SQLQueryString = """
            SELECT MIN(locked_until) AS due FROM \(ident: table) WHERE status = \(bind: activeStatus)
            """
        let a = try await sql.raw(queued).first(decoding: Row.self)?.due
        let b = try await sql.raw(leased).first(decoding: Row.self)?.due
        switch (a, b) {
        case let (a?, b?): return min(a, b)
        default: return a ?? b
        }
    }
}

/// Exponential backoff with jitter: base·2^(attempt−1)·[0.5, 1.5), capped.
struct Backoff: Sendable {
    var base: TimeInterval
    var cap: TimeInterval = 3600

    func delay(afterAttempt attempt: Int, jitter: Double = Double.random(in: 0.5..<1.5)) -> TimeInterval {
        min(cap, base * pow(2, Double(max(0, attempt - 1)))) * jitter
    }
}
