import FluentKit
import Foundation
import SQLiteNIO
import SQLKit
import Testing
@testable import App

/// `Database.writeStatement` on SQLite: one autocommit statement with `writeTransaction`'s lock
/// discipline (no pool thread waits inside SQLite; a busy statement wrote nothing and runs again).
@Suite struct WriteStatementTests {
    /// Another connection holds the write lock for 300 ms: the statement is refused busy, waits
    /// asynchronously, and runs once the lock is free — once, not failed, nothing written twice.
    @Test func aStatementWaitsOutAnotherConnectionsWriteLockAndRunsOnce() async throws {
        guard TestApp.postgresURL == nil else { return } // SQLite's locking; PostgreSQL runs the statement as it is
        try await TestApp.run(fileDatabase: true) { t in
            guard case .sqliteFile(let path) = t.app.deps.config.database else { Issue.record("a file database"); return }
            let other = try await SQLiteConnection.open(storage: .file(path: path), threadPool: t.app.threadPool, on: t.app.eventLoopGroup.any())
            _ = try await other.query("BEGIN IMMEDIATE", [])
            let released = ContinuousClock.now.advanced(by: .milliseconds(300))
            let holder = Task {
                try await Task.sleep(until: released, clock: .continuous)
                _ = try await other.query("INSERT INTO webhook_notices (notice_id, received_at) VALUES ('held', 0)", [])
                _ = try await other.query("COMMIT", [])
            }
            struct Row: Decodable { let notice_id: String }
            let returned = try await t.app.db.writeStatement { sql in
                try await sql.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES ('waited', \(bind: Date())) RETURNING notice_id")
                    .all(decoding: Row.self)
            }
            #expect(ContinuousClock.now >= released, "it ran only after the other connection let go of the lock")
            try await holder.value
            try await other.close()
            #expect(returned.map(\.notice_id) == ["waited"])
            struct N: Decodable { let n: Int }
            let rows = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_notices WHERE notice_id IN ('held', 'waited')").first(decoding: N.self)?.n
            #expect(rows == 2)
        }
    }
}
