import SQLKit
import Vapor

/// GET /ready: 200 when the database answers; says which mail transport is active and warns
/// when none is (emails then wait in the queue).
enum ReadinessController {
    struct Body: Content {
        let status: String
        let database: String
        let email: String
        let warnings: [String]
    }

    @Sendable static func ready(req: Request) async throws -> Response {
        var databaseOK = true
        do { _ = try await (req.db as! any SQLDatabase).raw("SELECT 1 AS one").all() } catch { databaseOK = false }
        let email: String
        var warnings: [String] = []
        switch req.deps.config.mail.transport {
        case .smtp: email = "smtp"
        case .outbox: email = "outbox"
        case .disabled:
            email = "disabled"
            warnings.append("no mail relay configured: emails stay queued until SMTP_HOST or EMAIL_PROVIDER is set")
        }
        let body = Body(status: databaseOK ? "ready" : "unavailable", database: databaseOK ? "ok" : "unreachable", email: email, warnings: warnings)
        return try await body.encodeResponse(status: databaseOK ? .ok : .serviceUnavailable, for: req)
    }
}
