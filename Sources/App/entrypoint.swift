import Logging
import NIOCore
import NIOPosix
import Vapor

@main
enum Entrypoint {
    static func main() async throws {
        // Swift concurrency on NIO's event loops (as Vapor's template suggests): no thread hop
        // between an async handler and the channel it answers on.
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        var env = try Environment.detect()
        // JSON lines in production, Vapor's console format otherwise; secrets scrubbed from both.
        if env == .production {
            let level = Environment.get("LOG_LEVEL").flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
            LoggingSystem.bootstrap { label in RedactingLogHandler(wrapped: JSONLogHandler(label: label, level: level)) }
        } else {
            try LoggingSystem.bootstrap(from: &env) { level in
                let console = Terminal()
                return { label in RedactingLogHandler(wrapped: ConsoleLogger(label: label, console: console, level: level)) }
            }
        }

        let app = try await Application.make(env)
        let config: AppConfig
        do {
            config = try AppConfig.load(environment: env)
        } catch {
            app.logger.critical("\((error as? AppConfig.Error)?.description ?? "Cannot start: \(error)")")
            try? await app.asyncShutdown()
            exit(1)
        }
        do {
            try await configure(app, config: config)
            app.asyncCommands.use(DevTokenCommand(), as: "dev-token")
            app.asyncCommands.use(WorkerCommand(), as: "worker")
            app.asyncCommands.use(RemindersCommand(), as: "reminders")
            if isServe(env.arguments), config.isDevelopment {
                // Demo data, printed tokens and the unauthenticated outbox page are for this machine only.
                let host = AppConfig.listeningHost(arguments: env.arguments, default: app.http.server.configuration.hostname)
                guard AppConfig.isLoopback(host) else {
                    app.logger.critical("""
                        Refusing to start: development mode (demo users, printed tokens, /dev/outbox without auth) \
                        bound to \(host), which is not a loopback address. Deploy with --env production \
                        (e.g. `App serve --env production --hostname 0.0.0.0`), or bind 127.0.0.1 for local development.
                        """)
                    try? await app.asyncShutdown()
                    exit(1)
                }
            }
            if isServe(env.arguments) {
                try await MigrateWithLock.run(app)
                if config.worker.runInServe { app.lifecycle.use(WorkerService()) }
                if config.isDevelopment {
                    try await DemoData.seed(app)
                    try await DemoData.printTokens(app)
                }
            }
            try await app.execute()
            // Order on SIGTERM: HTTP drains first, then the worker stops, then the database closes.
            if isServe(env.arguments) { await GracefulShutdown.drainHTTP(app, seconds: config.shutdownDrainSeconds) }
        } catch {
            // e.g. the port is taken, or the database is unreachable at start: said in the log, exit 1
            // (an error thrown out of main would end in a crash report instead).
            app.logger.critical("Cannot start: \(String(describing: error))")
            try? await app.asyncShutdown()
            exit(1)
        }
        try await app.asyncShutdown()
    }

    /// `serve` is Vapor's default command: no command word, or flags only.
    static func isServe(_ arguments: [String]) -> Bool {
        guard let first = arguments.dropFirst().first else { return true }
        return first == "serve" || first.hasPrefix("-")
    }
}
