import Fluent
import FluentPostgresDriver
import SQLKit
import Vapor

/// `serve` applies pending migrations at start. On PostgreSQL an advisory lock, held on a
/// connection of its own, makes replicas that start together take turns; the later ones find
/// nothing pending.
enum MigrateWithLock {
    static let lockKey: Int64 = 0x4C49_5645_5354 // "LIVEST"

    static func run(_ app: Application) async throws {
        guard case .postgres(let url) = app.deps.config.database else {
            if case .sqliteFile = app.deps.config.database {
                // WAL: a worker process and a one-shot command can share the file without
                // readers blocking the writer (the setting persists in the file).
                _ = try await app.db.sql.raw("PRAGMA journal_mode=WAL").all()
            }
            try await app.autoMigrate()
            return
        }
        let config = try SQLPostgresConfiguration(url: url)
        let conn = try await PostgresConnection.connect(configuration: config.coreConfiguration, id: 0, logger: app.logger)
        do {
            _ = try await conn.query("SELECT pg_advisory_lock(\(lockKey))", logger: app.logger)
            try await app.autoMigrate()
            _ = try await conn.query("SELECT pg_advisory_unlock(\(lockKey))", logger: app.logger)
        } catch {
            try? await conn.close()
            throw error
        }
        try await conn.close()
    }
}
