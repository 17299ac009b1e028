import FluentSQLiteDriver
import Foundation
import Testing
import Vapor
@testable import App

/// WAL checkpoints off the request path: the pool's connections stop checkpointing inside their
/// commits, and the checkpointer's own connection copies the WAL back in the background.
@Suite struct SQLiteCheckpointerTests {
    @Test func poolConnectionsDoNotCheckpointAndTheBackgroundOneCopiesTheWALBack() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("checkpoint-\(UUID().uuidString).sqlite").path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let app = try await Application.make(.testing)
        app.databases.use(.sqlite(.file(path)), as: .sqlite)
        let checkpointer = SQLiteCheckpointer(path: path, interval: .milliseconds(50))
        do {
            let sql = app.db as! any SQLDatabase
            _ = try await sql.raw("PRAGMA journal_mode=WAL").all()
            try await sql.raw("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)").run()
            app.lifecycle.use(checkpointer)
            try await app.asyncBoot()
            // Every loop's pooled connection: automatic checkpoints off.
            for loop in app.eventLoopGroup.makeIterator() {
                let db = app.databases.database(.sqlite, logger: app.logger, on: loop) as! any SQLDatabase
                struct Row: Decodable { let wal_autocheckpoint: Int }
                #expect(try await db.raw("PRAGMA wal_autocheckpoint").first(decoding: Row.self)?.wal_autocheckpoint == 0)
            }
            // Enough single-row commits to pass SQLite's 1,000-page default several times over.
            let body = String(repeating: "x", count: 3_000)
            for i in 0..<1_500 { try await sql.raw("INSERT INTO t (id, body) VALUES (\(bind: i), \(bind: body))").run() }
            let deadline = Date().addingTimeInterval(10)
            while checkpointer.stats.withLockedValue({ $0.framesCopied }) < 1_000, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(checkpointer.stats.withLockedValue { $0.framesCopied } >= 1_000)
            // What was written is in the database (read through the pool) and the WAL is fully copied back.
            struct Count: Decodable { let n: Int }
            #expect(try await sql.raw("SELECT COUNT(*) AS n FROM t").first(decoding: Count.self)?.n == 1_500)
        } catch {
            Issue.record(error)
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}
