import SQLKit
import Vapor

func routes(_ app: Application) throws {
    app.get("health") { _ in ["status": "ok"] }
    app.get("ready", use: ReadinessController.ready)
    app.get("metrics") { req async -> Response in
        let text = await req.deps.metrics.render(sql: req.db as? any SQLDatabase, now: req.now)
        var headers = HTTPHeaders()
        headers.contentType = HTTPMediaType(type: "text", subType: "plain", parameters: ["version": "0.0.4", "charset": "utf-8"])
        return Response(status: .ok, headers: headers, body: .init(string: text))
    }
    try app.register(collection: APIDocsController(resources: app.directory.resourcesDirectory))

    let api = app.grouped("api")
    try api.register(collection: UnsubscribeController())
    try api.register(collection: CronController())
    try api.register(collection: FeedController(authed: false))
    try api.register(collection: WebhookController())
    if app.deps.config.devOutbox { try app.grouped("dev").register(collection: OutboxController()) }
    try api.grouped("admin").grouped(AdminAuthMiddleware()).register(collection: AdminController())

    let authed = api.grouped(UserAuthMiddleware())
    try authed.register(collection: StreamController())
    try authed.register(collection: TokenController())
    try authed.register(collection: NotifyController())
    try authed.register(collection: PreferencesController())
    try authed.register(collection: RecordingController())
    try authed.register(collection: ModerationController())
    try authed.register(collection: FeedController(authed: true))
}
