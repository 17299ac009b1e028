import Fluent
import FluentSQLiteDriver
import NIOConcurrencyHelpers
import Vapor

/// WAL checkpoints off the request path (SQLite file databases, `serve`). By default SQLite copies
/// the WAL back into the database file inside the commit that crosses 1,000 WAL pages: that
/// transaction's caller (a webhook, an email's outcome) waits for ~1,000 page copies, and every
/// write queued behind it too — under a steady stream of small writes, a stall of tens of
/// milliseconds every second or so (the NCS burst showed it as its p99). Here the pool's connections
/// do not checkpoint; a connection of its own, on a thread of its own, runs a PASSIVE checkpoint
/// every `interval` (it never waits for a lock and never blocks writers; what it cannot copy yet it
/// copies next time). If a pooled connection is ever re-opened it checkpoints as SQLite does by default.
final class SQLiteCheckpointer: LifecycleHandler, @unchecked Sendable {
    let path: String
    let interval: Duration
    private var task: Task<Void, Never>?
    private var connection: SQLiteConnection?
    private let threadPool = NIOThreadPool(numberOfThreads: 1)
    /// Checkpoint runs and WAL frames copied back (for tests and /metrics-style checks).
    let stats = NIOLockedValueBox((runs: 0, framesCopied: 0))

    init(path: String, interval: Duration = .milliseconds(250)) {
        self.path = path
        self.interval = interval
    }

    func didBootAsync(_ app: Application) async throws {
        // One connection per event loop in Fluent's SQLite pool: each stops checkpointing on commit.
        for loop in app.eventLoopGroup.makeIterator() {
            guard let db = app.databases.database(.sqlite, logger: app.logger, on: loop) as? any SQLDatabase else { continue }
            try await db.raw("PRAGMA wal_autocheckpoint = 0").run()
        }
        threadPool.start()
        let connection = try await SQLiteConnection.open(storage: .file(path: path), threadPool: threadPool, logger: app.logger,
                                                         on: app.eventLoopGroup.any())
        let logger = app.logger
        task = Task { [interval, stats] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard !Task.isCancelled else { break }
                do {
                    // Row: busy (1 if it could not run now), frames in the WAL, frames copied back.
                    let rows = try await connection.query("PRAGMA wal_checkpoint(PASSIVE)")
                    let copied = rows.first?.column("checkpointed")?.integer ?? 0
                    stats.withLockedValue { $0.runs += 1; $0.framesCopied += max(0, copied) }
                } catch {
                    logger.warning("WAL checkpoint failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
                }
            }
        }
        self.connection = connection
    }

    func shutdownAsync(_ app: Application) async {
        task?.cancel()
        await task?.value
        // Closed here, not in the cancelled task (SQLiteNIO refuses work from a cancelled task).
        try? await connection?.close()
        try? await threadPool.shutdownGracefully()
    }
}
