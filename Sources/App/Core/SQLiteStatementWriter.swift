import FluentSQLiteDriver
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Vapor

/// A SQLite connection of its own for single write statements that must not wait inside SQLite for
/// the write lock (the viewers' groups of `ChannelEvents`). It is opened once with `busy_timeout = 0`
/// (and foreign keys on, like the pool's connections), so a statement is one job on a pool thread.
/// Through the shared pool the same statement was three — set the connection's lock wait to 0, the
/// statement, set it back — and each hand-off to a pool thread and back can land behind whatever
/// else wants a CPU at that moment (the NCS burst's tail, `benchmarks/notes/ncsburst.md`).
///
/// A busy statement wrote nothing (autocommit: atomic by itself): it runs again after an asynchronous
/// pause, as `writeTransaction` retries, until `SQLiteWrites.patienceSeconds` (then 503 database_busy).
/// Statements run one at a time (one SQLite handle), in arrival order except that a statement refused
/// busy queues again after its pause. Closed with the application.
///
/// WAL checkpoints are not run by this connection's commits (`wal_autocheckpoint = 0`): SQLite runs one
/// in the committing statement whenever the WAL passes 1,000 pages — every ~75 viewers' changes, which
/// made one request in ~75 wait ~5 ms for the copy into the database file and its fsync, the burst's p99.
/// Instead, within `checkpointDelay` of a write a PASSIVE checkpoint runs on a second connection; it does
/// not block writers (SQLite lets a checkpoint and a writer run at once in WAL mode), so the statements
/// go on meanwhile. Should the WAL still be past `walPageLimit` pages after one (it starts over only at a
/// write that finds it all copied), the next checkpoint runs between two statements, as SQLite's own
/// would. The limit is SQLite's own threshold, which the pool's connections keep: a WAL held under it
/// leaves their commits nothing to checkpoint either.
final class SQLiteStatementWriter: Sendable {
    private let logger: Logger
    private let writer: LazySQLiteConnection
    private let checkpointer: LazySQLiteConnection
    private let busy = NIOLockedValueBox(0)
    private let checkpointDelay: Duration
    /// Whether a checkpoint is due (one pending covers every write before it starts).
    private let checkpointPending = NIOLockedValueBox(false)
    private let checkpointsRun = NIOLockedValueBox(0)
    private let catchUpsRun = NIOLockedValueBox(0)
    private let walPageLimit: Int

    /// How many times a statement found the write lock taken and was run again.
    var busyRetries: Int { busy.withLockedValue { $0 } }

    init(configuration: SQLiteConfiguration, threadPool: NIOThreadPool, eventLoop: any EventLoop, logger: Logger,
         checkpointDelay: Duration = .milliseconds(250), walPageLimit: Int = 1_000) {
        let source = SQLiteConnectionSource(configuration: configuration, threadPool: threadPool)
        let noWait = "PRAGMA busy_timeout = \(SQLiteWrites.lockWaitMilliseconds)" // the busy handler off: a taken lock answers SQLITE_BUSY at once
        writer = LazySQLiteConnection(source: source, eventLoop: eventLoop, logger: logger, setup: [
            noWait,
            "PRAGMA wal_autocheckpoint = 0", // commits do not checkpoint (see above)
        ])
        // A PASSIVE checkpoint never calls the busy handler; off all the same, as on the writer.
        checkpointer = LazySQLiteConnection(source: source, eventLoop: eventLoop, logger: logger, setup: [noWait])
        self.logger = logger
        self.checkpointDelay = checkpointDelay
        self.walPageLimit = walPageLimit
    }

    /// How many background checkpoints have run, and how many of them had to be repeated between two
    /// statements because the WAL had grown past `walPageLimit` pages.
    var checkpoints: (background: Int, catchUps: Int) { (checkpointsRun.withLockedValue { $0 }, catchUpsRun.withLockedValue { $0 }) }

    /// Runs `body`, which must run exactly one statement, on this connection.
    func run<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) async throws -> T) async throws -> T {
        defer { scheduleCheckpoint() } // also after a failure: a statement may fail after writing (e.g. while decoding its rows)
        return try await SQLiteWrites.retryingWhileBusy(onBusy: { self.busy.withLockedValue { $0 += 1 } }) {
            try await self.writer.withConnection { try await body($0.sql()) }
        }
    }

    private func scheduleCheckpoint() {
        guard checkpointPending.withLockedValue({ pending in defer { pending = true }; return !pending }) else { return }
        Task {
            try? await Task.sleep(for: checkpointDelay)
            checkpointPending.withLockedValue { $0 = false } // writes from now on ask for the next one
            do {
                // PASSIVE: copies what no reader still needs, never waits for a lock, never blocks a writer.
                let walPages = try await checkpointer.withConnection { try await $0.query(Self.checkpoint).first?.column("log")?.integer ?? 0 }
                checkpointsRun.withLockedValue { $0 += 1 }
                // SQLite starts the WAL over only at a write that finds every frame copied. Statements that
                // keep committing while each checkpoint runs would let it grow for as long as they do:
                // past the limit, one checkpoint runs between two statements, where none can commit.
                if walPages >= walPageLimit {
                    let done = try await writer.withConnection { try await $0.query(Self.checkpoint).first?.column("busy")?.integer == 0 }
                    if done { catchUpsRun.withLockedValue { $0 += 1 } } // else another connection was checkpointing
                }
            } catch {
                logger.debug("background WAL checkpoint failed", metadata: ["error": "\(String(reflecting: error).prefix(200))"])
            }
        }
    }

    private static let checkpoint = "PRAGMA wal_checkpoint(PASSIVE)"

    /// Closes the connections (after the statement and checkpoint running now); later statements fail.
    func close() async {
        await writer.close()
        await checkpointer.close()
    }

    /// `close` for Vapor's synchronous shutdown (off the event loops): does not wait for the gates.
    func closeNow() {
        writer.closeNow()
        checkpointer.closeNow()
    }
}

/// One SQLite connection, opened at first use with `setup` run on it, used by one body at a time
/// (FIFO), closed for good by `close`.
final class LazySQLiteConnection: Sendable {
    private let source: SQLiteConnectionSource
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let setup: [String]
    private let gate = AsyncGate()
    private let state = NIOLockedValueBox<State>(.unopened)

    private enum State { case unopened, open(SQLiteConnection), closed }
    private static let closed = APIError(.serviceUnavailable, "shutting_down", "The server is shutting down; try again shortly")

    init(source: SQLiteConnectionSource, eventLoop: any EventLoop, logger: Logger, setup: [String]) {
        (self.source, self.eventLoop, self.logger, self.setup) = (source, eventLoop, logger, setup)
    }

    func withConnection<T: Sendable>(_ body: (SQLiteConnection) async throws -> T) async throws -> T {
        try await gate.locked { try await body(try await open()) }
    }

    /// After the body running now; later bodies fail.
    func close() async {
        await gate.locked { try? await take()?.close() }
    }

    /// `close` that does not wait for the gate (Vapor's synchronous shutdown, off the event loops).
    func closeNow() {
        try? take()?.close().wait()
    }

    /// The open connection, if any; closed from now on.
    private func take() -> SQLiteConnection? {
        let was = state.withLockedValue { s in defer { s = .closed }; return s }
        if case .open(let conn) = was { return conn }
        return nil
    }

    /// Under the gate.
    private func open() async throws -> SQLiteConnection {
        switch state.withLockedValue({ $0 }) {
        case .open(let conn): return conn
        case .closed: throw Self.closed
        case .unopened:
            let conn = try await source.makeConnection(logger: logger, on: eventLoop).get()
            do {
                for statement in setup { _ = try await conn.query(statement) }
            } catch {
                try? await conn.close()
                throw error
            }
            // Closed meanwhile (`closeNow` does not wait for the gate): this connection is not kept.
            let kept = state.withLockedValue { s in
                guard case .unopened = s else { return false }
                s = .open(conn)
                return true
            }
            guard kept else {
                try? await conn.close()
                throw Self.closed
            }
            return conn
        }
    }
}

/// Closes the writer with the application, before its thread pool stops.
struct SQLiteStatementWriterShutdown: LifecycleHandler {
    let writer: SQLiteStatementWriter
    func shutdownAsync(_ application: Application) async { await writer.close() }
    func shutdown(_ application: Application) { writer.closeNow() }
}

/// A FIFO lock for async code: one body at a time, waiters resumed in arrival order.
final class AsyncGate: Sendable {
    private let state = NIOLockedValueBox<(held: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func locked<T: Sendable>(_ body: () async throws -> T) async rethrows -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        let free = state.withLockedValue { s in
            if s.held { return false }
            s.held = true
            return true
        }
        if free { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLockedValue { s in
                if s.held { s.waiting.append(c); return false }
                s.held = true
                return true
            }
            if now { c.resume() }
        }
    }

    private func release() {
        let next = state.withLockedValue { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty { s.held = false; return nil }
            return s.waiting.removeFirst() // stays held: handed to the next
        }
        next?.resume()
    }
}
