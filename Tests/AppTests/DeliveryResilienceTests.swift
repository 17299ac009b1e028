import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Crash and outage behaviour, with real processes: the App binary (`App worker`) killed with
/// SIGKILL mid fan-out, and an SMTP sink that goes away for 30 s.
@Suite(.serialized, .enabled(if: MailPeers.available && ProcessInfo.processInfo.environment["APP_BINARY"] != nil,
                            "needs APP_BINARY and the SMTP peers (scripts/test provides both)"))
struct DeliveryResilienceTests {
    static var root: URL { AppProcess.root }

    static func seed(_ t: TestApp, members: Int, run: String) async throws -> String {
        var users: [[String: Any]] = [TestApp.user("creator", role: "creator", timezone: "Europe/Paris")]
        users += (0..<members).map { ["id": "u\($0)", "name": "Member \($0)", "email": "c\($0)-\(run)@example.com", "timezone": "Asia/Tokyo"] }
        try await t.importUsers(users, follows: (0..<members).map { ["followerId": "u\($0)", "followedId": "creator"] })
        return try await t.createStream(scheduled: false)
    }

    static func counts(_ t: TestApp, _ stream: String) async throws -> [String: Int] {
        struct Row: Decodable { let status: String; let n: Int }
        let rows = try await (t.app.db as! any SQLDatabase)
            .raw("SELECT status, COUNT(*) AS n FROM deliveries WHERE stream_id = \(bind: stream) GROUP BY status").all(decoding: Row.self)
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.status, $0.n) })
    }

    /// `App worker` against the test's database and the sink, as a real separate process.
    static func startWorker(_ config: AppConfig) throws -> Process {
        try AppProcess.start(["worker"], environment: try AppProcess.environment(database: config.database))
    }

    static func exited(_ p: Process) async { _ = await AppProcess.exited(p, timeout: .infinity) }

    static func waitUntil(timeout: TimeInterval, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    @Test func killDashNineMidFanOutLosesNothingAndDuplicatesAtMostWhatWasInFlight() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let members = 10_000
        try await TestApp.run(realClock: true, fileDatabase: true) { t in
            let stream = try await Self.seed(t, members: members, run: run)
            let first = try Self.startWorker(t.app.deps.config)
            // Kill it once it is clearly under way (a slow CI machine may take a while to get there).
            let midway = try await Self.waitUntil(timeout: 300) {
                guard first.isRunning else { return true } // exited by itself: reported below
                return (try await Self.counts(t, stream)["sent"] ?? 0) >= 500
            }
            guard first.isRunning else {
                Issue.record("App worker exited on its own (status \(first.terminationStatus)): check its configuration")
                return
            }
            #expect(midway, "the first worker never got going")
            kill(first.processIdentifier, SIGKILL)
            await Self.exited(first)
            let atKill = try await Self.counts(t, stream)
            #expect((atKill["sent"] ?? 0) < members, "killed too late to prove anything: \(atKill)")

            let second = try Self.startWorker(t.app.deps.config)
            let finished = try await Self.waitUntil(timeout: 600) { (try await Self.counts(t, stream)["sent"] ?? 0) == members }
            second.terminate()
            await Self.exited(second)
            #expect(second.terminationReason == .exit && second.terminationStatus == 0, "worker did not stop cleanly on SIGTERM")
            let final = try await Self.counts(t, stream)
            #expect(finished, "not all sent: \(final)")
            #expect(final == ["sent": members])
        }
        let stored = MailPeers.sinkMessages(containing: "-\(run)@")
        #expect(stored.count == members)
        let duplicates = stored.values.reduce(0) { $0 + $1.count - 1 }
        #expect(duplicates <= 64, "\(duplicates) duplicates")
        print("crash test: \(duplicates) duplicate(s) after SIGKILL")
    }

    @Test func sigtermFinishesInFlightWorkAndARestartDeliversEverythingExactlyOnce() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let members = 3_000
        try await TestApp.run(realClock: true, fileDatabase: true) { t in
            let stream = try await Self.seed(t, members: members, run: run)
            // `serve` runs the worker in-process: SIGTERM goes through Vapor's shutdown.
            let port = AppProcess.freePort()
            let env = try AppProcess.environment(database: t.app.deps.config.database)
            let server = try AppProcess.serve(port: port, environment: env)
            defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
            let underway = try await Self.waitUntil(timeout: 300) { (try await Self.counts(t, stream)["sent"] ?? 0) >= 300 || !server.isRunning }
            #expect(underway && server.isRunning, "serve never got going")
            kill(server.processIdentifier, SIGTERM)
            #expect(await AppProcess.exited(server, timeout: 60), "serve did not stop within 60 s of SIGTERM")
            #expect(server.terminationReason == .exit && server.terminationStatus == 0, "serve exited with \(server.terminationStatus)")
            let atStop = try await Self.counts(t, stream)
            // Nothing left claimed: in-flight emails finished, the rest went back to the queue.
            #expect(atStop["sending"] == nil, "rows still leased after a graceful stop: \(atStop)")
            #expect((atStop["sent"] ?? 0) < members, "stopped too late to prove anything: \(atStop)")

            let worker = try AppProcess.start(["worker"], environment: env)
            defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL) } }
            let finished = try await Self.waitUntil(timeout: 600) { (try await Self.counts(t, stream)["sent"] ?? 0) == members }
            kill(worker.processIdentifier, SIGTERM)
            #expect(await AppProcess.exited(worker, timeout: 60))
            #expect(worker.terminationReason == .exit && worker.terminationStatus == 0)
            let final = try await Self.counts(t, stream)
            #expect(finished, "not all sent: \(final)")
        }
        let stored = MailPeers.sinkMessages(containing: "-\(run)@")
        #expect(stored.count == members)
        let duplicates = stored.values.reduce(0) { $0 + $1.count - 1 }
        #expect(duplicates == 0, "a graceful stop must not resend anything: \(duplicates) duplicates")
    }

    @Test func sinkDownForThirtySecondsOnlyDelaysMail() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let sink = try DedicatedSink()
        defer { sink.stopNow() }
        try await sink.start()
        var config = MailPeers.sinkConfiguration(port: sink.port)
        // The outage shows as refused connections (connect 1 s); replies get the product's own patience.
        config.timeouts = .init(connect: 1, reply: 30, dataEnd: 120)
        let client = try SMTPClient(configuration: config, maxConnections: 4)
        try await TestApp.run(mailTransport: SMTPTransport(client: client), realClock: true, adjust: { $0.mail.retryBaseSeconds = 1 }) { t in
            let stream = try await Self.seed(t, members: 400, run: run)
            let worker = Task { await t.app.deps.worker.run() }
            defer { worker.cancel() }
            _ = try await Self.waitUntil(timeout: 60) { (try await Self.counts(t, stream)["sent"] ?? 0) >= 50 }
            await sink.stop()
            try await Task.sleep(for: .seconds(30))
            let during = try await Self.counts(t, stream)
            #expect((during["sent"] ?? 0) < 400, "everything went out before the outage: \(during)")
            #expect((during["failed"] ?? 0) == 0)
            try await sink.start()
            let done = try await Self.waitUntil(timeout: 180) { (try await Self.counts(t, stream)["sent"] ?? 0) == 400 }
            let final = try await Self.counts(t, stream)
            #expect(done, "\(final)")
            worker.cancel()
            await worker.value
        }
        await client.shutdown()
        let stored = MailPeers.sinkMessages(containing: "-\(run)@", in: sink.maildir)
        #expect(stored.count == 400)
        #expect(stored.values.reduce(0) { $0 + $1.count - 1 } <= 64)
    }
}

/// A private instance of the strict sink (scripts/mail/smtp_sink.py) that a test can stop and restart.
final class DedicatedSink: @unchecked Sendable {
    let port: Int
    let maildir: String
    private var process: Process?

    init() throws {
        // Below Linux's ephemeral range (32768–60999): an outgoing connection could otherwise hold the
        // port while the sink is down and the restart could not bind it.
        port = Int.random(in: 30_000...32_700)
        maildir = FileManager.default.temporaryDirectory.appendingPathComponent("sink-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: maildir, withIntermediateDirectories: true)
    }

    /// Starts the sink and waits for its READY; retries a few times if the port is briefly busy.
    func start() async throws {
        try await Blocking.run { try self.startBlocking() }
    }

    private func startBlocking() throws {
        for attempt in 0..<10 {
            if try launch() { return }
            usleep(useconds_t(300_000 * (attempt + 1)))
        }
        throw CancellationError()
    }

    private func launch() throws -> Bool {
        let env = MailPeers.env
        let certs = URL(fileURLWithPath: env["SMTP_TEST_CA_FILE"]!).deletingLastPathComponent().path
        let python = env["MAIL_PARSE"]!.split(separator: " ").first.map(String.init)!
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [DeliveryResilienceTests.root.appendingPathComponent("scripts/mail/smtp_sink.py").path,
                       "--host", "127.0.0.1", "--port", "\(port)", "--cert", certs + "/server.pem", "--key", certs + "/server.key",
                       "--maildir", maildir, "--user", env["SMTP_SINK_USER"]!, "--password", env["SMTP_SINK_PASSWORD"]!]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let ready = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self).contains("READY")
        guard ready else {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            return false
        }
        process = p
        return true
    }

    /// Abruptly, like a crashed relay: connections drop, the port refuses.
    func stop() async {
        _ = try? await Blocking.run { self.stopNow() }
    }

    /// `stop` for a `defer`.
    func stopNow() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        for _ in 0..<250 where p.isRunning { usleep(20_000) }
        process = nil
    }
}
