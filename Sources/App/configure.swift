import Fluent
import FluentPostgresDriver
import FluentSQLiteDriver
import NIOSSL
import Vapor

/// Builds the whole application from a typed config. `entrypoint` passes the environment's
/// config; tests pass their own config and overrides.
func configure(_ app: Application, config: AppConfig, overrides: Overrides = Overrides()) async throws {
    switch config.database {
    case .sqliteFile(let path):
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        app.databases.use(.sqlite(.file(path)), as: .sqlite)
    case .sqliteMemory:
        app.databases.use(.sqlite(.memory), as: .sqlite)
    case .postgres(let url):
        app.databases.use(.postgres(configuration: try SQLPostgresConfiguration(url: url)), as: .psql)
    }
    app.migrations.add(Migrations.all)

    let clock = overrides.clock
    app.deps = Dependencies(
        config: config,
        clock: clock,
        jwt: await JWTVerifier.make(config.jwt, clock: clock),
        tokens: AgoraTokenIssuer(settings: config.agora, clock: clock),
        uids: UidAllocator(random: overrides.randomUID),
        streamEvents: overrides.streamEvents ?? LoggingStreamEvents(logger: app.logger)
    )

    // Wire format: ISO 8601 UTC with Z and milliseconds, everywhere.
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .custom { date, enc in
        var c = enc.singleValueContainer()
        try c.encode(ISO8601.string(date))
    }
    ContentConfiguration.global.use(encoder: encoder, for: .json)

    app.routes.defaultMaxBodySize = "1mb"
    // Render and most PaaS hosts pass PORT; --hostname/--port flags still override.
    if let port = Environment.get("PORT").flatMap(Int.init) { app.http.server.configuration.port = port }
    if app.environment == .production { app.http.server.configuration.hostname = "0.0.0.0" }
    app.middleware = Middlewares()
    // CORS first so that error responses carry the headers too.
    if let cors = corsMiddleware(config) { app.middleware.use(cors, at: .beginning) }
    app.middleware.use(JSONErrorMiddleware())

    try routes(app)
}

private func corsMiddleware(_ config: AppConfig) -> CORSMiddleware? {
    let origins = ([config.frontendURL].compactMap { $0 } + config.corsAllowedOrigins)
    guard !origins.isEmpty else { return nil }
    return CORSMiddleware(configuration: .init(
        allowedOrigin: .any(origins),
        allowedMethods: [.GET, .POST, .PUT, .PATCH, .DELETE, .OPTIONS],
        allowedHeaders: [.accept, .authorization, .contentType, .origin, .xRequestedWith],
        allowCredentials: false,
        cacheExpiration: 600
    ))
}
