import SQLKit
import Vapor

func routes(_ app: Application) throws {
    app.get("health") { _ in ["status": "ok"] }
    // /health is the public liveness probe (Render's health check); /ready and /metrics tell
    // more about the deployment and take METRICS_TOKEN as a bearer token when it is set.
    let probes = app.grouped(MetricsAuthMiddleware())
    probes.get("ready", use: ReadinessController.ready)
    probes.get("metrics") { req async -> Response in
        let text = await req.deps.metrics.render(sql: req.db.sql, now: req.now)
        var headers = HTTPHeaders()
        headers.contentType = HTTPMediaType(type: "text", subType: "plain", parameters: ["version": "0.0.4", "charset": "utf-8"])
        return Response(status: .ok, headers: headers, body: .init(string: text))
    }
    try app.register(collection: APIDocsController(resources: app.directory.resourcesDirectory))

    let deps = app.deps
    let lifecycle = deps.lifecycle
    let api = app.grouped("api")
    try api.register(collection: UnsubscribeController(tokens: deps.unsubscribe))
    try api.register(collection: CronController(reminders: deps.reminders, series: deps.series))
    try api.register(collection: FeedController(authed: false, lifecycle: lifecycle, mail: deps.config.mail))
    try api.register(collection: WebhookController(
        ncsSecret: deps.config.ncsSecret, channelEvents: ChannelEvents(lifecycle: lifecycle, sqliteWriter: deps.sqliteWriter, database: { app.db }),
        recordingEvents: RecordingEvents(recordings: deps.recordings, clock: deps.clock), clock: deps.clock))
    try api.register(collection: EmailWebhookController(secrets: deps.config.emailWebhooks, jobs: deps.jobs, clock: deps.clock))
    if app.deps.config.devOutbox { try app.grouped("dev").register(collection: OutboxController()) }
    let admin = api.grouped("admin").grouped(AdminAuthMiddleware())
    try admin.register(collection: AdminController(uids: deps.uids, clock: deps.clock))
    try admin.register(collection: SuppressionController())
    try admin.register(collection: WebhookAdminController(settings: deps.config.webhooks, clock: deps.clock))

    let authed = api.grouped(UserAuthMiddleware())
    try authed.register(collection: StreamController(lifecycle: lifecycle, recordings: deps.recordings, tokens: deps.tokens))
    try authed.register(collection: TokenController(cache: deps.cache, tokens: deps.tokens, appID: deps.config.agora.appId, clock: deps.clock))
    try authed.register(collection: NotifyController(lifecycle: lifecycle, jobs: deps.jobs))
    try authed.register(collection: PreferencesController())
    try authed.register(collection: DevicesController())
    try authed.register(collection: RecordingController(lifecycle: lifecycle, recordings: deps.recordings, agora: deps.config.agora))
    try authed.register(collection: ModerationController(lifecycle: lifecycle, jobs: deps.jobs, kickingEnabled: deps.kickingRules != nil))
    try authed.register(collection: FeedController(authed: true, lifecycle: lifecycle, mail: deps.config.mail))
    try authed.register(collection: RSVPController(lifecycle: lifecycle, jobs: deps.jobs, clock: deps.clock))
    try authed.register(collection: SeriesController(service: deps.series, lifecycle: lifecycle, clock: deps.clock))
    try authed.register(collection: AttendanceController(lifecycle: lifecycle, clock: deps.clock))
    try authed.register(collection: StageController(lifecycle: lifecycle, jobs: deps.jobs, kickingEnabled: deps.kickingRules != nil,
                                                    tokenTTL: Int(deps.config.agora.tokenTTLSeconds), clock: deps.clock))
}
