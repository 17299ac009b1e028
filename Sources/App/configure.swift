import Fluent
import FluentPostgresDriver
import FluentSQLiteDriver
import AsyncHTTPClient
import Mailer
import NIOSSL
import Vapor

/// SQLite is a local file: waiting for a pooled connection means contention, never an outage, so
/// requests wait (writers queue behind `BEGIN IMMEDIATE`) instead of failing after Fluent's 10 s.
private let sqlitePoolWait: TimeAmount = .seconds(60)

/// Builds the whole application from a typed config. `entrypoint` passes the environment's
/// config; tests pass their own config and overrides.
func configure(_ app: Application, config: AppConfig, overrides: Overrides = Overrides()) async throws {
    if case .postgres = config.database {} else {
        // SQLite runs every statement on a thread of the app's pool, and a statement waiting for the
        // write lock holds its thread: with at least one thread per connection (one connection per
        // event loop) plus two, the lock holder always finds a thread to commit on. NIO's shared
        // singleton pool has only one thread per core, shared by every app in the process.
        app.threadPool = NIOThreadPool(numberOfThreads: System.coreCount + 2)
    }
    var sqliteWriter: SQLiteStatementWriter?
    switch config.database {
    case .sqliteFile, .sqliteMemory:
        let storage: SQLiteConfiguration.Storage
        if case .sqliteFile(let path) = config.database {
            let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
            try PrivateFiles.directory(dir)
            try PrivateFiles.touch(path)
            storage = .file(path: path)
        } else {
            storage = .memory(identifier: UUID().uuidString) // one identifier: the writer reaches the same database
        }
        let sqlite = SQLiteConfiguration(storage: storage)
        app.databases.use(.sqlite(sqlite, connectionPoolTimeout: sqlitePoolWait), as: .sqlite)
        let writer = SQLiteStatementWriter(configuration: sqlite, threadPool: app.threadPool,
                                           eventLoop: app.eventLoopGroup.any(), logger: app.logger)
        app.lifecycle.use(SQLiteStatementWriterShutdown(writer: writer))
        sqliteWriter = writer
    case .postgres(let url):
        // A request waits up to 60 s for a pooled connection (bursts queue behind row locks); an
        // unreachable server still fails fast (connection errors, not pool waits).
        app.databases.use(.postgres(configuration: try SQLPostgresConfiguration(url: url),
                                    maxConnectionsPerEventLoop: config.databaseConnectionsPerLoop,
                                    connectionPoolTimeout: .seconds(60)), as: .psql)
    }
    app.migrations.add(Migrations.all)

    let clock = overrides.clock
    let metrics = AppMetrics()
    let wake = WakeSignal()
    let jobs = JobQueue(clock: clock, wake: { wake.wake() })
    let transport = try overrides.mailTransport
        ?? makeTransport(config.mail, clock: clock, client: MeteredClient(base: app.client, metrics: metrics, system: .email))
    let templates = try EmailTemplates(directory: overrides.templatesDirectory ?? app.directory.resourcesDirectory + "Templates")
    let unsubscribe = UnsubscribeTokens(jwtSecret: config.jwt.secret)
    let sender = transport.map {
        DeliverySender(transport: $0, templates: templates, settings: config.mail, clock: clock, logger: app.logger,
                       unsubscribe: unsubscribe, metrics: metrics)
    }
    let reminders = Reminders(lead: config.reminderLead, queue: jobs, clock: clock, metrics: metrics)
    let agoraClient = MeteredClient(base: app.client, metrics: metrics, system: .agora)
    let kicking = config.cloudRecording.map { KickingRules(settings: $0, appID: config.agora.appId, client: agoraClient) }
    let recordings = Recordings(
        store: config.s3.map { ObjectStore(settings: $0, client: MeteredClient(base: app.client, metrics: metrics, system: .s3), clock: clock) },
        cloud: config.cloudRecording.map { CloudRecordingClient(settings: $0, appID: config.agora.appId, client: agoraClient) },
        externalOrigins: config.replayOrigins)
    let lifecycle = StreamLifecycle(
        clock: clock, events: WebhookStreamEvents(inner: overrides.streamEvents ?? NotifyingStreamEvents(queue: jobs, reminders: reminders), clock: clock),
        recordings: overrides.streamRecordings ?? recordings, jobs: jobs, hostGrace: config.hostGrace, logger: app.logger)
    let series = SeriesService(clock: clock, reminders: reminders, jobs: jobs)
    // Its own client: redirects are never followed (SSRF), every call bounded by the timeout.
    let webhookClient = HTTPClient(eventLoopGroupProvider: .shared(app.eventLoopGroup), configuration: .init(
        redirectConfiguration: .disallow,
        timeout: .init(connect: .seconds(config.webhooks.timeoutSeconds), read: .seconds(config.webhooks.timeoutSeconds))))
    // Registered before the worker's handler, so it shuts down after the worker stopped sending.
    app.lifecycle.use(HTTPClientShutdown(client: webhookClient))
    let webhooks = WebhookDispatcher(sql: app.db.sql, clock: clock, client: webhookClient, settings: config.webhooks, logger: app.logger, metrics: metrics)
    let push = try makePushSender(config, app: app, clock: clock, templates: templates, metrics: metrics)
    let workerID = Worker.makeID()
    // The fan-out hands its pages to this process's worker before writing their rows (see LocalDeliveries).
    let local = sender.map { sender in
        LocalDeliveries(capacity: max(1000, 4 * config.worker.maxInFlight), canSend: { sender.transport.pausedReason == nil })
    }
    let worker = Worker(
        db: app.db, clock: clock, logger: app.logger, sender: sender,
        handlers: [
            .fanout: { job, db in
                try await FanOut.run(job, db: db, now: clock.now, wake: { wake.wake() }, completion: jobs, push: push.enabled, local: local,
                                     lease: Lease(table: Job.schema, workerID: workerID, duration: config.worker.leaseSeconds))
            },
            .noticeCompletion: { job, db in try await NoticeCompletion.run(job, queue: jobs, clock: clock, on: db) },
            .reminder: { job, db in try await reminders.runJob(job, on: db) },
            .hostGrace: { job, db in try await lifecycle.graceExpired(job, on: db) },
            .seriesTopUp: { job, db in try await series.topUpJob(job, on: db) },
            .emailEvents: { job, db in try await EmailEventApplier(clock: clock, queue: jobs).run(job, on: db) },
            .kickingRule: { job, db in
                guard let kicking else { return .skipped("Agora REST credentials not configured") }
                return try await kicking.run(job, on: db)
            },
        ],
        settings: config.worker, wake: wake, webhooks: webhooks, push: push, id: workerID, local: local)
    app.deps = Dependencies(
        config: config,
        clock: clock,
        jwt: await JWTVerifier.make(config.jwt, clock: clock),
        tokens: AgoraTokenIssuer(settings: config.agora, clock: clock),
        uids: UidAllocator(random: overrides.randomUID),
        jobs: jobs,
        wake: wake,
        worker: worker,
        unsubscribe: unsubscribe,
        reminders: reminders,
        recordings: recordings,
        kickingRules: kicking,
        lifecycle: lifecycle,
        series: series,
        webhooks: webhooks,
        push: push,
        rateLimiter: RateLimiter(clock: clock),
        mailTransport: transport,
        metrics: metrics,
        cache: TokenCache(ttlSeconds: config.tokenCacheSeconds),
        sqliteWriter: sqliteWriter
    )
    if transport == nil {
        app.logger.warning("No mail relay configured (SMTP_HOST / EMAIL_PROVIDER): emails stay queued until one is.")
    }

    // Wire format: ISO 8601 UTC with Z and milliseconds, everywhere.
    let encoder = JSONEncoder()
    // Sorted keys: the same resource always serialises the same way (stable, diffable responses).
    encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    encoder.dateEncodingStrategy = .custom { date, enc in
        var c = enc.singleValueContainer()
        try c.encode(ISO8601.string(date))
    }
    ContentConfiguration.global.use(encoder: encoder, for: .json)

    app.routes.defaultMaxBodySize = "1mb"
    // Render and most PaaS hosts pass PORT; --hostname/--port flags still override.
    if let port = Environment.get("PORT").flatMap(Int.init) { app.http.server.configuration.port = port }
    if app.environment == .production { app.http.server.configuration.hostname = "0.0.0.0" }
    app.http.server.configuration.shutdownTimeout = .milliseconds(Int64(config.shutdownDrainSeconds * 1000))
    app.middleware = Middlewares()
    // Request id + access log + metrics outermost (they see the final status), then CORS so
    // that error responses carry its headers too, then errors in the API's shape.
    app.middleware.use(RequestLogMiddleware())
    if let cors = corsMiddleware(config) { app.middleware.use(cors) }
    app.middleware.use(JSONErrorMiddleware())
    app.middleware.use(TokenCacheInvalidation())
    if case .postgres = config.database {} else { app.middleware.use(SQLiteBusyRetry()) }

    try routes(app)
}

private func makeTransport(_ mail: AppConfig.MailSettings, clock: AppClock, client: any Client) throws -> (any MailTransport)? {
    switch mail.transport {
    case .smtp(let smtp): SMTPTransport(client: try SMTPClient(configuration: smtp, maxConnections: mail.smtpConnections))
    case .api(let api): BatchingTransport(client: api.client(http: client), settings: api)
    case .outbox: OutboxTransport(now: clock.now)
    case .disabled: nil
    }
}

private func corsMiddleware(_ config: AppConfig) -> CORSMiddleware? {
    let origins = config.allowedOrigins
    guard !origins.isEmpty else { return nil }
    return CORSMiddleware(configuration: .init(
        allowedOrigin: .any(origins),
        allowedMethods: [.GET, .POST, .PUT, .PATCH, .DELETE, .OPTIONS],
        allowedHeaders: [.accept, .authorization, .contentType, .origin, .xRequestedWith, RequestLogMiddleware.header],
        allowCredentials: false,
        cacheExpiration: 600
    ))
}
