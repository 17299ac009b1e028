import FluentSQLiteDriver
import Vapor

/// SQLite only: a transaction that read before writing fails at once with SQLITE_BUSY when another
/// connection committed meanwhile (SQLite cannot wait there without risking a deadlock). The
/// transaction was rolled back, so the request is simply run again, a few times, with jitter.
struct SQLiteBusyRetry: AsyncMiddleware {
    static let attempts = 5

    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
        var attempt = 1
        while true {
            do {
                return try await next.respond(to: request)
            } catch let error as SQLiteError where error.reason == .busy && attempt < Self.attempts && request.method != .GET {
                attempt += 1
                try await Task.sleep(for: .milliseconds(Int64.random(in: 5...(20 * Int64(attempt)))))
            }
        }
    }
}
