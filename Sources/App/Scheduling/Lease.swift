import Foundation
import SQLKit

/// The statuses of a queue table: `queued` rows wait for `run_at`, the `active` status is held
/// under a lease (`locked_by`, `locked_until`); every other status is final.
protocol QueueStatus: RawRepresentable<String>, Encodable, Sendable {
    static var queued: Self { get }
    static var active: Self { get }
}

/// The one lease routine for every queue table (jobs, deliveries): claiming due rows (or rows whose
/// lease expired: a crashed worker), renewing, releasing, and ending a lease with an outcome.
/// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas never wait on or take each other's rows.
/// SQLite: the UPDATE is one write transaction, which serializes claimers on the file.
struct Lease<Status: QueueStatus>: Sendable {
    let table: String
    let workerID: String
    let duration: TimeInterval

    /// Written as SQL literals, not binds: SQLite uses a partial index (the deliveries' due index
    /// covers only queued and sending rows) only when the query's status is a literal it can match.
    private var activeStatus: String { Status.active.rawValue }
    private var queuedStatus: String { Status.queued.rawValue }


    func claim(limit: Int, now: Date, on sql: any SQLDatabase) async throws -> [ClaimedRow] {
        guard limit > 0 else { return [] }
        let skipLocked = sql.dialect.name == "postgresql" ? " FOR UPDATE SKIP LOCKED" : ""
        // Two index-served picks (never an OR across columns, which made PostgreSQL scan every row
        // ever queued on each claim): leases that expired first, then due rows in run_at order.
        let query: SQLQueryString = """
            WITH expired AS (
              SELECT id FROM \(ident: table) WHERE status = \(literal: activeStatus) AND locked_until < \(bind: now)
              ORDER BY locked_until LIMIT \(literal: limit)\(unsafeRaw: skipLocked)
            ), due AS (
              SELECT id FROM \(ident: table) WHERE status = \(literal: queuedStatus) AND run_at <= \(bind: now)
              ORDER BY run_at LIMIT \(literal: limit)\(unsafeRaw: skipLocked)
            )
            UPDATE \(ident: table) SET status = \(literal: activeStatus), locked_by = \(bind: workerID),
              locked_until = \(bind: now.addingTimeInterval(duration)), attempts = attempts + 1, updated_at = \(bind: now)
            WHERE id IN (SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) picked LIMIT \(literal: limit))
            RETURNING id, attempts
            """
        return try await sql.raw(query).all(decoding: ClaimedRow.self)
    }

    /// Extends the lease on rows this worker is still working on; returns those it still holds (a row
    /// missing: its lease expired and another worker took it over, or it was finished meanwhile).
    @discardableResult
    func renew(_ ids: [Int64], now: Date, on sql: any SQLDatabase) async throws -> Set<Int64> {
        var held = Set<Int64>()
        for chunk in ids.chunks(of: 500) where !chunk.isEmpty {
            held.formUnion(try await sql.update(table)
                .set("locked_until", to: SQLBind(now.addingTimeInterval(duration)))
                .where("id", .in, Array(chunk)).where("locked_by", .equal, SQLBind(workerID))
                .where("status", .equal, SQLBind(activeStatus)).returning("id").all(decoding: RowID.self).map(\.id))
        }
        return held
    }

    /// Gives rows back to the queue, due now (a worker shutting down before finishing them).
    func release(_ ids: [Int64], now: Date, on sql: any SQLDatabase) async throws {
        for chunk in ids.chunks(of: 500) where !chunk.isEmpty {
            try await ending(sql.update(table), status: Status.queued, now: now)
                .set("run_at", to: SQLBind(now))
                .where("id", .in, Array(chunk)).where("locked_by", .equal, SQLBind(workerID))
                .where("status", .equal, SQLBind(activeStatus)).run()
        }
    }

    /// Ends this worker's lease on one row with `status`; a queued status (a retry) is due at `retryAt`.
    /// `note` goes to the table's note column (`last_error` for jobs, `last_reply` for deliveries).
    /// Only while this worker still holds the row: a row taken over after an expired lease is not touched.
    /// `uncountAttempt`: the claim's attempt did not happen (nothing was tried), so it is taken back.
    func finish(_ id: Int64, status: Status, note: (column: String, value: String?), retryAt: Date? = nil, uncountAttempt: Bool = false,
                now: Date, on sql: any SQLDatabase) async throws {
        var update = ending(sql.update(table), status: status, now: now)
            .set(SQLIdentifier(note.column), to: SQLBind(note.value.map { String($0.prefix(500)) }))
        if let retryAt { update = update.set("run_at", to: SQLBind(retryAt)) }
        if uncountAttempt { update = update.set("attempts", to: SQLRaw("attempts - 1")) }
        try await update.where("id", .equal, SQLBind(id)).where("locked_by", .equal, SQLBind(workerID)).run()
    }

    /// The columns every end of a lease sets: the new status, no lease holder.
    func ending(_ update: SQLUpdateBuilder, status: Status, now: Date) -> SQLUpdateBuilder {
        update.set("status", to: SQLBind(status)).set("locked_until", to: SQLLiteral.null)
            .set("locked_by", to: SQLLiteral.null).set("updated_at", to: SQLBind(now))
    }

    /// The same, for statements written as SQL text (the delivery outcomes' group commit).
    static var endingColumns: SQLQueryString { "locked_until = NULL, locked_by = NULL" }

    /// When the next row falls due (nil if nothing is waiting). Two index-served lookups, not one
    /// aggregate over every queued row: the worker asks after each pass, with 100k rows queued.
    func nextDue(on sql: any SQLDatabase) async throws -> Date? {
        let queued: SQLQueryString = """
            SELECT run_at AS due FROM \(ident: table) WHERE status = \(literal: queuedStatus) ORDER BY run_at LIMIT 1
            """
        let leased: SQLQueryString = """
            SELECT MIN(locked_until) AS due FROM \(ident: table) WHERE status = \(literal: activeStatus)
            """
        let a = try await sql.raw(queued).first(decoding: DueRow.self)?.due
        let b = try await sql.raw(leased).first(decoding: DueRow.self)?.due
        switch (a, b) {
        case let (a?, b?): return min(a, b)
        default: return a ?? b
        }
    }
}

private struct DueRow: Decodable { let due: Date? }
private struct RowID: Decodable { let id: Int64 }

/// A row a claim leased.
struct ClaimedRow: Decodable, Sendable {
    let id: Int64
    let attempts: Int
}

/// Exponential backoff with jitter: base·2^(attempt−1)·[0.5, 1.5), capped.
struct Backoff: Sendable {
    var base: TimeInterval
    var cap: TimeInterval = 3600

    func delay(afterAttempt attempt: Int, jitter: Double = Double.random(in: 0.5..<1.5)) -> TimeInterval {
        min(cap, base * pow(2, Double(max(0, attempt - 1)))) * jitter
    }
}
