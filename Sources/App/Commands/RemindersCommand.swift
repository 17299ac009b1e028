import Vapor

/// `App reminders`: one pass of due reminders, then sends what it queued and exits (0, or 1 on
/// failure) — the command for a Render Cron Job.
struct RemindersCommand: AsyncCommand {
    struct Signature: CommandSignature {}
    var help: String { "Send due stream reminders once and exit (for a scheduled cron job)." }

    func run(using context: CommandContext, signature: Signature) async throws {
        let app = context.application
        do {
            try await MigrateWithLock.run(app)
            let sent = try await app.deps.reminders.runDue(on: app.db)
            try await app.deps.worker.drain()
            await app.deps.mailTransport?.shutdown()
            context.console.print("reminders sent for \(sent.count) stream(s)")
        } catch {
            context.console.error("reminders pass failed: \(String(reflecting: type(of: error)))")
            throw ExitCode(1)
        }
    }
}
