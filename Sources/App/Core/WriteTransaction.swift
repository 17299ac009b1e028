import FluentKit
import FluentSQLiteDriver
import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit

extension Database {
    /// A transaction that will write. PostgreSQL: Fluent's transaction. SQLite: `BEGIN IMMEDIATE`,
    /// so the write lock is taken before the first read — a deferred transaction that reads and
    /// then writes fails at once with SQLITE_BUSY(_SNAPSHOT) when another connection committed in
    /// between, and SQLite cannot wait there. The wait for the lock is bounded (busy_timeout),
    /// because SQLite blocks a thread of NIO's shared pool while it waits; when it runs out, the
    /// whole transaction is run again after an asynchronous pause (nothing of it was written).
    ///
    /// What the body hands to `AfterCommit.run(after:)` (e.g. waking the worker for a job it queued) runs once
    /// the transaction has committed, and not at all if it rolls back.
    func writeTransaction<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        if inTransaction { return try await body(self) }
        let hooks = AfterCommit()
        // Set inside the body: Fluent may run it in a task of its own.
        let hooked: @Sendable (any Database) async throws -> T = { db in try await AfterCommit.$current.withValue(hooks) { try await body(db) } }
        let result: T
        do {
            result = if sql.dialect.name == "sqlite" {
                try await sqliteWrite { conn in try await hooked(SQLiteWriteTransaction(base: conn)) }
            } else {
                try await transaction(hooked)
            }
        } catch {
            hooks.ended(committed: false)
            throw error
        }
        hooks.ended(committed: true)
        return result
    }

    private func sqliteWrite<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        let began = BeganFlag()
        // Only the lock was not had (a busy error before BEGIN got through): nothing ran, the body may
        // run again. A busy error after BEGIN — e.g. at COMMIT without WAL — goes up: the body's models
        // may already be saved.
        return try await SQLiteWrites.retryingWhileBusy(unless: { began.value }) {
            began.value = false
            return try await withConnection { conn in
                let sql = conn.sql
                try await sql.raw("PRAGMA busy_timeout = \(unsafeRaw: String(SQLiteWrites.lockWaitMilliseconds))").run()
                // Later statements on this connection (outside any transaction) wait long, bounded:
                // the short wait is only for taking the lock up front.
                let relax: SQLQueryString = "PRAGMA busy_timeout = \(unsafeRaw: String(SQLiteWrites.statementWaitMilliseconds))"
                do {
                    try await sql.raw("BEGIN IMMEDIATE").run()
                } catch {
                    try? await sql.raw(relax).run()
                    throw error
                }
                began.value = true
                do {
                    let result = try await body(conn)
                    try await sql.raw("COMMIT").run()
                    try? await sql.raw(relax).run()
                    return result
                } catch {
                    try? await sql.raw("ROLLBACK").run()
                    try? await sql.raw(relax).run()
                    throw error
                }
            }
        }
    }
}

/// Actions that wait for the commit of the write transaction they were asked for in. The worker is
/// woken for a job queued in a transaction only after the commit: woken before, it would look, find
/// nothing yet and sleep until its next poll (up to a second before a live-now fan-out started).
final class AfterCommit: Sendable {
    @TaskLocal static var current: AfterCommit?
    private let state = NIOLockedValueBox<(actions: [@Sendable () -> Void], ended: Bool)>(([], false))

    /// Runs `action` once what was just written on `db` is committed: after the surrounding write
    /// transaction commits when `db` is that transaction, else now (`db` commits on its own, or the
    /// transaction has ended: a task started inside it may outlive it).
    static func run(after db: any Database, _ action: @escaping @Sendable () -> Void) {
        guard db.inTransaction, let current, current.state.withLockedValue({ s in
            if !s.ended { s.actions.append(action) }
            return !s.ended
        }) else { return action() }
    }

    /// Committed: the actions run. Rolled back: they are dropped (what they were for was not written).
    fileprivate func ended(committed: Bool) {
        let actions = state.withLockedValue { s in defer { s = ([], true) }; return s.actions }
        if committed { for action in actions { action() } }
    }
}

/// Whether an attempt got past BEGIN IMMEDIATE (its body may have written: it is not run again).
private final class BeganFlag: @unchecked Sendable {
    var value = false
}

enum SQLiteWrites {
    /// How long one attempt waits for the write lock inside SQLite (blocking a pool thread): not
    /// at all — a taken lock is retried after an asynchronous pause instead.
    static let lockWaitMilliseconds = 0
    /// What other statements on a connection that ran a write transaction wait for a lock.
    static let statementWaitMilliseconds = 5_000
    /// How long a transaction keeps trying for the lock (its pauses after refusals) before the client
    /// gets 503 database_busy.
    static let patienceSeconds: Int64 = 20

    /// The answer when the lock could not be had in time (not retried again by `SQLiteBusyRetry`).
    static let exhausted: APIError = {
        var e = APIError(.serviceUnavailable, "database_busy", "The database is busy; try again shortly")
        e.headers.replaceOrAdd(name: .retryAfter, value: "2")
        return e
    }()

    /// Runs `attempt` again while it fails because SQLite's write lock was taken (and `unless` does not
    /// say it got past that point), after an asynchronous pause: no thread of NIO's pool (shared by every
    /// connection) sits in SQLite's busy handler while the lock holder needs one to finish. When the pauses
    /// add up to `patience`, `exhausted`. Only the pauses count: time an attempt spends queued for a pooled
    /// connection is not time refused the lock (the pool bounds it, 60 s) — counted, a burst of writers
    /// queued behind SQLite's one connection per event loop answered 503 before most of them had tried once.
    static func retryingWhileBusy<T>(patience: Duration = .seconds(patienceSeconds),
                                     isBusy refused: (any Error) -> Bool = { ($0 as? SQLiteError).map(isBusy) ?? false },
                                     unless started: () -> Bool = { false }, onBusy: () -> Void = {},
                                     _ attempt: () async throws -> T) async throws -> T {
        var attempts = 0
        var paused = Duration.zero
        while true {
            attempts += 1
            do {
                return try await attempt()
            } catch where refused(error) && !started() {
                guard paused < patience else { throw exhausted }
                onBusy()
                let pause = Duration.milliseconds(Int.random(in: 2...(4 * min(attempts, 12))))
                paused += pause
                try await Task.sleep(for: pause)
            }
        }
    }

    static func isBusy(_ error: SQLiteError) -> Bool {
        [.busy, .busyInSnapshot, .busyTimeout, .busyInRecovery, .locked].contains(error.reason)
    }
}

/// The connection of a `BEGIN IMMEDIATE` transaction, marked as being in one, so Fluent code
/// inside that opens a transaction of its own joins this one instead of beginning another.
struct SQLiteWriteTransaction: Database {
    let base: any Database
    var context: DatabaseContext { base.context }
    var inTransaction: Bool { true }
    func execute(query: DatabaseQuery, onOutput: @escaping @Sendable (any DatabaseOutput) -> ()) -> EventLoopFuture<Void> {
        base.execute(query: query, onOutput: onOutput)
    }
    func execute(schema: DatabaseSchema) -> EventLoopFuture<Void> { base.execute(schema: schema) }
    func execute(enum: DatabaseEnum) -> EventLoopFuture<Void> { base.execute(enum: `enum`) }
    func transaction<T>(_ closure: @escaping @Sendable (any Database) -> EventLoopFuture<T>) -> EventLoopFuture<T> { closure(self) }
    func transaction<T: Sendable>(_ closure: @escaping @Sendable (any Database) async throws -> T) async throws -> T { try await closure(self) }
    func withConnection<T>(_ closure: @escaping @Sendable (any Database) -> EventLoopFuture<T>) -> EventLoopFuture<T> { closure(self) }
    func withConnection<T: Sendable>(_ closure: @escaping @Sendable (any Database) async throws -> T) async throws -> T { try await closure(self) }
}

extension SQLiteWriteTransaction: SQLDatabase {
    var dialect: any SQLDialect { base.sql.dialect }
    var version: (any SQLDatabaseReportedVersion)? { base.sql.version }
    var queryLogLevel: Logger.Level? { base.sql.queryLogLevel }
    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) -> EventLoopFuture<Void> {
        base.sql.execute(sql: query, onRow)
    }
    func execute(sql query: any SQLExpression, _ onRow: @escaping @Sendable (any SQLRow) -> ()) async throws {
        try await base.sql.execute(sql: query, onRow)
    }
}
