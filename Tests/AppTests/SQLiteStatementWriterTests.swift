import FluentKit
import NIOConcurrencyHelpers
import Foundation
import SQLiteNIO
import SQLKit
import Testing
@testable import App

/// `SQLiteStatementWriter`: one autocommit statement per job on a connection of its own that never
/// waits inside SQLite for the lock (a busy statement wrote nothing and runs again after a pause).
@Suite struct SQLiteStatementWriterTests {
    /// Another connection holds the write lock for 300 ms: the statement is refused busy, waits
    /// asynchronously, and runs once the lock is free — once, not failed, nothing written twice.
    @Test func aStatementWaitsOutAnotherConnectionsWriteLockAndRunsOnce() async throws {
        guard TestApp.postgresURL == nil else { return } // SQLite's locking; PostgreSQL runs the statement as it is
        try await TestApp.run(fileDatabase: true) { t in
            guard case .sqliteFile(let path) = t.app.deps.config.database else { Issue.record("a file database"); return }
            let other = try await SQLiteConnection.open(storage: .file(path: path), threadPool: t.app.threadPool, on: t.app.eventLoopGroup.any())
            _ = try await other.query("BEGIN IMMEDIATE", [])
            let writer = try #require(t.app.deps.sqliteWriter)
            // Let go after 300 ms, and not before the writer has been refused (however slow the machine; at most 60 s).
            let holder = Task {
                try await Task.sleep(for: .milliseconds(300))
                _ = try await DeliveryResilienceTests.waitUntil(timeout: 60) { writer.busyRetries > 0 }
                _ = try await other.query("INSERT INTO webhook_notices (notice_id, received_at) VALUES ('held', 0)", [])
                let committing = ContinuousClock.now
                _ = try await other.query("COMMIT", [])
                return committing
            }
            struct Row: Decodable { let notice_id: String }
            let returned = try await writer.run { sql in
                try await sql.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES ('waited', \(bind: Date())) RETURNING notice_id")
                    .all(decoding: Row.self)
            }
            let ran = ContinuousClock.now
            #expect(writer.busyRetries > 0,
                    "it was refused at once and waited outside SQLite (not in a busy handler holding a pool thread)")
            #expect(ran >= (try await holder.value), "it ran only after the other connection let go of the lock")
            try await other.close()
            #expect(returned.map(\.notice_id) == ["waited"])
            struct N: Decodable { let n: Int }
            let rows = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_notices WHERE notice_id IN ('held', 'waited')").first(decoding: N.self)?.n
            #expect(rows == 2)
        }
    }

    /// The writer's connection is set up like the pool's (foreign keys enforced); statements sent at
    /// once all run, one at a time; after `close` it refuses.
    @Test func theWritersConnectionEnforcesForeignKeysAndRunsEveryStatementSentAtOnce() async throws {
        guard TestApp.postgresURL == nil else { return }
        try await TestApp.run(fileDatabase: true) { t in
            let writer = try #require(t.app.deps.sqliteWriter)
            #expect(try await writer.run { try await $0.raw("PRAGMA foreign_keys").all().first?.decode(column: "foreign_keys", as: Int.self) } == 1)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        try await writer.run { try await $0.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES (\(bind: "p\(i)"), \(bind: Date()))").run() }
                    }
                }
                try await group.waitForAll()
            }
            struct N: Decodable { let n: Int }
            #expect(try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_notices WHERE notice_id LIKE 'p%'").first(decoding: N.self)?.n == 40)
            await writer.close()
            await #expect(throws: APIError.self) { try await writer.run { try await $0.raw("SELECT 1").run() } }
        }
    }

    /// The writer's commits never checkpoint (that copy and its fsync landed in one request in ~75 of a
    /// burst): within the delay of a write, a PASSIVE checkpoint on a second connection copies the WAL
    /// into the database file — the only way it grows in WAL mode.
    @Test func writesAreCheckpointedInTheBackgroundNotByTheirOwnCommits() async throws {
        guard TestApp.postgresURL == nil else { return }
        try await TestApp.run(fileDatabase: true) { t in
            guard case .sqliteFile(let path) = t.app.deps.config.database else { Issue.record("a file database"); return }
            let writer = try #require(t.app.deps.sqliteWriter)
            #expect(try await writer.run { try await $0.raw("PRAGMA wal_autocheckpoint").all().first?.decode(column: "wal_autocheckpoint", as: Int.self) } == 0)
            func size() -> Int { ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0 }
            try await Task.sleep(for: .milliseconds(600)) // the checkpoint asked for above has run
            // Whatever is still in the WAL (the migrations) copied now, so only the rows below can grow the file.
            _ = try await t.app.db.sql.raw("PRAGMA wal_checkpoint(TRUNCATE)").all()
            let before = (size: size(), checkpoints: writer.checkpoints.background)
            for i in 0..<300 {
                let id = "checkpoint-\(i)-" + String(repeating: "x", count: 100)
                try await writer.run { try await $0.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES (\(bind: id), \(bind: Date()))").run() }
            }
            _ = try await DeliveryResilienceTests.waitUntil(timeout: 60) { size() > before.size }
            #expect(size() > before.size, "the rows reached the database file")
            #expect(writer.checkpoints.background > before.checkpoints)
        }
    }

    /// The WAL starts over only at a write that finds it all copied; a writer that keeps committing while
    /// each background checkpoint runs could keep that from happening. Past its page limit (1 here) the
    /// next checkpoint runs between two statements, and the write after it starts the WAL over.
    @Test func aWALPastItsLimitIsCheckpointedBetweenTwoStatements() async throws {
        guard TestApp.postgresURL == nil else { return }
        try await TestApp.run(fileDatabase: true) { t in
            guard case .sqliteFile(let path) = t.app.deps.config.database else { Issue.record("a file database"); return }
            let writer = SQLiteStatementWriter(configuration: .init(storage: .file(path: path)), threadPool: t.app.threadPool,
                                               eventLoop: t.app.eventLoopGroup.any(), logger: t.app.logger,
                                               checkpointDelay: .milliseconds(20), walPageLimit: 1)
            do {
                func insert(_ id: String) async throws {
                    try await writer.run { try await $0.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES (\(bind: id), \(bind: Date()))").run() }
                }
                for i in 0..<20 { try await insert("limit-\(i)") }
                _ = try await DeliveryResilienceTests.waitUntil(timeout: 60) { writer.checkpoints.catchUps > 0 }
                #expect(writer.checkpoints.catchUps > 0)
                try await insert("after-catch-up")
                struct WAL: Decodable { let log: Int }
                let wal = try await t.app.db.sql.raw("PRAGMA wal_checkpoint(PASSIVE)").first(decoding: WAL.self)?.log
                #expect((wal ?? .max) < 20, "the WAL started over: it holds the last write's pages, not all twenty-one")
            } catch {
                await writer.close()
                throw error
            }
            await writer.close()
        }
    }

    /// Patience counts the pauses after refusals, not the time an attempt spends before it is refused (queued
    /// for one of SQLite's pooled connections behind other writers): three slow refusals within 100 ms of
    /// pauses still get their turn; refusals that go on past it answer 503 database_busy.
    @Test func patienceCountsThePausesForTheLockNotTheQueueForAConnection() async throws {
        struct Refused: Error {}
        let tries = NIOLockedValueBox(0)
        let value = try await SQLiteWrites.retryingWhileBusy(patience: .milliseconds(100), isBusy: { $0 is Refused }) {
            try await Task.sleep(for: .milliseconds(60)) // queued for a connection
            guard tries.withLockedValue({ $0 += 1; return $0 }) > 3 else { throw Refused() }
            return "written"
        }
        #expect(value == "written" && tries.withLockedValue { $0 } == 4)
        let started = ContinuousClock.now
        await #expect(throws: APIError.self) {
            try await SQLiteWrites.retryingWhileBusy(patience: .milliseconds(30), isBusy: { $0 is Refused }) { () async throws -> Int in throw Refused() }
        }
        #expect(ContinuousClock.now - started >= .milliseconds(30), "it paused for its whole patience first")
    }
}
