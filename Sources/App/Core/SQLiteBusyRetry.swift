import FluentSQLiteDriver
import NIOCore
import Vapor

/// SQLite only: a transaction that read before writing fails at once with SQLITE_BUSY when another
/// connection committed meanwhile (SQLite cannot wait there without risking a deadlock). The
/// transaction was rolled back, so the request is simply run again, a few times, with jitter.
struct SQLiteBusyRetry: Middleware {
    static let attempts = 5

    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        guard request.method != .GET else { return next.respond(to: request) }
        return attempt(1, request, next)
    }

    private func attempt(_ n: Int, _ request: Request, _ next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).flatMapError { error in
            guard let e = error as? SQLiteError, e.reason == .busy, n < Self.attempts else { return request.eventLoop.makeFailedFuture(error) }
            let delay = TimeAmount.milliseconds(Int64.random(in: 5...(20 * Int64(n + 1))))
            return request.eventLoop.flatScheduleTask(in: delay) { attempt(n + 1, request, next) }.futureResult
        }
    }
}
