import Fluent
import Vapor

/// The original design's cron entry points, now on top of the reminder rule (idempotent, safe to
/// run together and alongside the worker): `Authorization: Bearer {CRON_SECRET}`.
struct CronController: RouteCollection {
    let reminders: Reminders
    let series: SeriesService

    func boot(routes: any RoutesBuilder) throws {
        let cron = routes.grouped("cron").grouped(CronAuthMiddleware())
        cron.post("trigger-stream-emails", use: run)
        cron.get("check-stream-reminders", use: run)
        cron.post("series-top-up", use: topUp)
    }

    struct TopUp: Content { var success = true; let occurrencesCreated: Int }

    /// POST /api/cron/series-top-up — the daily job's work, for an external cron (idempotent).
    @Sendable func topUp(req: Request) async throws -> TopUp {
        TopUp(occurrencesCreated: try await series.topUp(on: req.db))
    }

    struct Response: Content {
        var success = true
        let remindersSent: Int
        let streams: [Item]
        struct Item: Content { let id: String; let title: String; let startTime: Date }
    }

    @Sendable func run(req: Request) async throws -> Response {
        let sent = try await reminders.runDue(on: req.db)
        return Response(remindersSent: sent.count, streams: sent.map { .init(id: $0.id!, title: $0.title, startTime: $0.startTime) })
    }
}

struct CronAuthMiddleware: AsyncMiddleware {
    func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Vapor.Response {
        guard let secret = request.deps.config.cronSecret else { throw APIError.featureDisabled("The cron endpoints (CRON_SECRET)") }
        guard let bearer = request.headers.bearerAuthorization, SecretCompare.equal(bearer.token, secret) else {
            throw APIError.unauthorized("Missing or invalid cron secret")
        }
        return try await next.respond(to: request)
    }
}

