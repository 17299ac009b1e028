import FluentKit
import FluentSQLiteDriver
import Foundation
import Logging
import SQLKit

extension Database {
    /// A transaction that will write. PostgreSQL: Fluent's transaction. SQLite: `BEGIN IMMEDIATE`,
    /// so the write lock is taken before the first read — a deferred transaction that reads and
    /// then writes fails at once with SQLITE_BUSY(_SNAPSHOT) when another connection committed in
    /// between, and SQLite cannot wait there. The wait for the lock is bounded (busy_timeout),
    /// because SQLite blocks a thread of NIO's shared pool while it waits; when it runs out, the
    /// whole transaction is run again after an asynchronous pause (nothing of it was written).
    func writeTransaction<T: Sendable>(_ body: @escaping @Sendable (any Database) async throws -> T) async throws -> T {
        guard sql.dialect.name == "sqlite", !inTransaction else {
            return try await inTransaction ? body(self) : transaction(body)
        }
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await withConnection { conn in
                    let sql = conn.sql
                    try await sql.raw("PRAGMA busy_timeout = \(unsafeRaw: String(SQLiteWrites.lockWaitMilliseconds))").run()
                    try await sql.raw("BEGIN IMMEDIATE").run()
                    do {
                        let result = try await body(SQLiteWriteTransaction(base: conn))
                        try await sql.raw("COMMIT").run()
                        return result
                    } catch {
                        try? await sql.raw("ROLLBACK").run()
                        throw error
                    }
                }
            } catch let error as SQLiteError where SQLiteWrites.isBusy(error) && attempt < SQLiteWrites.attempts {
                try await Task.sleep(for: .milliseconds(Int.random(in: 5...(10 * min(attempt, 20)))))
            }
        }
    }
}

enum SQLiteWrites {
    /// How long one attempt waits for the write lock (blocking a pool thread meanwhile).
    static let lockWaitMilliseconds = 250
    /// Attempts before the error reaches the client (as 503): about a minute of contention.
    static let attempts = 200

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
