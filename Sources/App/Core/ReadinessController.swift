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
        /// Host-platform webhook endpoints: how many, and the ones disabled (circuit breaker, 410, admin).
        let webhooks: Webhooks
        let warnings: [String]
        struct Webhooks: Content { let endpoints: Int; let disabled: [Disabled] }
        struct Disabled: Content { let id: String; @NullEncodable var reason: String?; @NullEncodable var disabledAt: Date? }
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
        struct Endpoint: Decodable { let id: String; let enabled: Bool; let disabled_reason: String?; let disabled_at: Date? }
        let endpoints = migrations == "applied"
            ? ((try? await sql.raw("SELECT id, enabled, disabled_reason, disabled_at FROM webhook_endpoints ORDER BY id LIMIT 500")
                .all(decoding: Endpoint.self)) ?? []) : []
        let disabled = endpoints.filter { !$0.enabled }.map { Body.Disabled(id: $0.id, reason: $0.disabled_reason, disabledAt: $0.disabled_at) }
        if !disabled.isEmpty { warnings.append("\(disabled.count) webhook endpoint(s) disabled: see /api/admin/webhooks") }
        let ready = databaseOK && migrations == "applied" && worker != "stopped"
        let body = Body(status: ready ? "ready" : "unavailable", database: databaseOK ? "ok" : "unreachable",
                        migrations: migrations, worker: worker, email: email,
                        webhooks: .init(endpoints: endpoints.count, disabled: disabled), warnings: warnings)
        return try await body.encodeResponse(status: ready ? .ok : .serviceUnavailable, for: req)
    }

    static func migrationState(_ sql: any SQLDatabase) async -> String {
        struct Row: Decodable { let name: String }
        guard let rows = try? await sql.raw("SELECT name FROM _fluent_migrations").all(decoding: Row.self) else { return "pending" }
        let done = Set(rows.map(\.name))
        return Migrations.all.allSatisfy({ done.contains($0.name) }) ? "applied" : "pending"
    }
}
