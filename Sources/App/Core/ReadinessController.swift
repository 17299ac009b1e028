import SQLKit
import Vapor

/// GET /ready: 200 when this process can do its job — the database answers, every migration
/// is applied, and the worker loop runs (when it runs inside `serve`); 503 otherwise. Also says
/// which mail transport is active and warns when none is (emails then wait in the queue).
enum ReadinessController {
    struct Body: Content {
        let status: String
        let database: String
        let migrations: String
        /// running | stopped | external (RUN_WORKER=false: another process runs it)
        let worker: String
        let email: String
        let warnings: [String]
    }

    @Sendable static func ready(req: Request) async throws -> Response {
        let sql = req.db.sql
        var databaseOK = true
        do { _ = try await sql.raw("SELECT 1 AS one").all() } catch { databaseOK = false }
        let migrations = databaseOK ? await migrationState(sql) : "unknown"
        let worker: String
        if req.deps.config.worker.runInServe { worker = req.deps.worker.isRunning ? "running" : "stopped" } else { worker = "external" }
        let email: String
        var warnings: [String] = []
        switch req.deps.config.mail.transport {
        case .smtp: email = "smtp"
        case .api(let api): email = api.provider.rawValue
        case .outbox: email = "outbox"
        case .disabled:
            email = "disabled"
            warnings.append("no mail relay configured: emails stay queued until SMTP_HOST or EMAIL_PROVIDER is set")
        }
        if let paused = req.deps.mailTransport?.pausedReason { warnings.append("email sending paused: \(paused)") }
        let ready = databaseOK && migrations == "applied" && worker != "stopped"
        let body = Body(status: ready ? "ready" : "unavailable", database: databaseOK ? "ok" : "unreachable",
                        migrations: migrations, worker: worker, email: email, warnings: warnings)
        return try await body.encodeResponse(status: ready ? .ok : .serviceUnavailable, for: req)
    }

    static func migrationState(_ sql: any SQLDatabase) async -> String {
        struct Row: Decodable { let name: String }
        guard let rows = try? await sql.raw("SELECT name FROM _fluent_migrations").all(decoding: Row.self) else { return "pending" }
        let done = Set(rows.map(\.name))
        return Migrations.all.allSatisfy({ done.contains($0.name) }) ? "applied" : "pending"
    }
}
