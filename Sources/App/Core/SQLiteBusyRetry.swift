import FluentSQLiteDriver
import NIOCore
import Vapor

/// SQLite only, the last line: write transactions take their lock up front and retry themselves
/// (`Database.writeTransaction`); a statement outside one that still meets a busy database (any
/// SQLITE_BUSY variant) had nothing written, so the request runs again, a few times, with jitter.
struct SQLiteBusyRetry: Middleware {
    static let attempts = 5

    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        attempt(1, request, next)
    }

    private func attempt(_ n: Int, _ request: Request, _ next: any Responder) -> EventLoopFuture<Response> {
        next.respond(to: request).flatMapError { error in
            guard let e = error as? SQLiteError, SQLiteWrites.isBusy(e), n < Self.attempts else { return request.eventLoop.makeFailedFuture(error) }
            let delay = TimeAmount.milliseconds(Int64.random(in: 5...(20 * Int64(n + 1))))
            return request.eventLoop.flatScheduleTask(in: delay) { attempt(n + 1, request, next) }.futureResult
        }
    }
}
