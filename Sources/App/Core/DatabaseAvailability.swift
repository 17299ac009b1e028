import FluentPostgresDriver
import FluentSQLiteDriver
import Vapor

/// Errors that mean "the database is not reachable right now" (PostgreSQL restarting, pool
/// exhausted, SQLite busy), answered as 503 `database_unavailable` rather than 500: the client
/// may retry, and nothing was half-written (each write is one statement or one transaction).
enum DatabaseAvailability {
    static func isUnavailable(_ error: any Error) -> Bool {
        if let e = error as? PSQLError {
            if [.connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed].contains(e.code) { return true }
            if e.code == .server, let state = e.serverInfo?[.sqlState] {
                // 08: connection exception, 57P: operator intervention (shutdown, starting up), 53: out of resources.
                return state.hasPrefix("08") || state.hasPrefix("57P") || state.hasPrefix("53")
            }
            return false
        }
        if let e = error as? SQLiteError { return SQLiteWrites.isBusy(e) }
        return error is ConnectionPoolTimeoutError || error is ConnectionPoolError
    }

    /// A unique constraint lost to a concurrent request (two first saves of the same row).
    static func isConflict(_ error: any Error) -> Bool {
        if let e = error as? PSQLError { return e.code == .server && e.serverInfo?[.sqlState] == "23505" }
        if let e = error as? SQLiteError { return [.constraint, .constraintUniqueFailed, .constraintPrimaryKeyFailed].contains(e.reason) }
        return false
    }
}
