import Vapor

/// `App worker`: the worker loop alone, until SIGINT/SIGTERM.
struct WorkerCommand: AsyncCommand {
    struct Signature: CommandSignature {}
    var help: String { "Run the background worker (emails, fan-outs, scheduled jobs) without the HTTP server." }

    func run(using context: CommandContext, signature: Signature) async throws {
        let app = context.application
        try await MigrateWithLock.run(app)
        let worker = app.deps.worker
        let task = Task { await worker.run() }
        let signals = SignalWatcher(signals: [SIGINT, SIGTERM]) { worker.stop() }
        await task.value
        signals.cancel()
        await app.deps.mailTransport?.shutdown()
    }
}
