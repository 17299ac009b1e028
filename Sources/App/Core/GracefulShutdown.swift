import NIOConcurrencyHelpers
import Vapor

/// Requests between the outermost middleware's entry and their response.
final class InFlightRequests: Sendable {
    private let count = NIOLockedValueBox(0)
    func enter() { count.withLockedValue { $0 += 1 } }
    func leave() { count.withLockedValue { $0 -= 1 } }
    var current: Int { count.withLockedValue { $0 } }
}

/// SIGTERM/SIGINT on `serve`, in this order: stop accepting connections and let the requests in
/// flight finish (HTTP keep-alive connections are closed after their current response), bounded
/// by SHUTDOWN_DRAIN_SECONDS; then `Application.asyncShutdown` stops the worker (its own grace,
/// WORKER_SHUTDOWN_SECONDS, then unfinished rows go back to the queue) and only then closes the
/// database pools. Vapor alone tears its storage down in no fixed order, so a request that
/// first touched the database after the pools closed crashed the process.
enum GracefulShutdown {
    static func drainHTTP(_ app: Application, seconds: TimeInterval) async {
        let inFlight = app.deps.inFlight
        app.logger.notice("shutting down: no new connections; draining requests", metadata: ["in_flight": "\(inFlight.current)"])
        // Quiesces every connection; waits up to `shutdownTimeout` (set from the same setting).
        await app.server.shutdown()
        // A request whose connection outlived the timeout still runs: wait for it, bounded again.
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
        while inFlight.current > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if inFlight.current > 0 {
            app.logger.warning("shutting down with requests still running", metadata: ["in_flight": "\(inFlight.current)"])
        } else {
            app.logger.notice("requests drained")
        }
    }
}
