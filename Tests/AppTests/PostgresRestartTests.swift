import Foundation
import Testing
@testable import App

/// PostgreSQL stopped and started under load (a private cluster scripts/test starts for this):
/// while it is down requests fail cleanly — 503 in the API's error shape, never a 500 — and the
/// service recovers by itself once it is back.
@Suite(.enabled(if: AppProcess.available && MailPeers.available && TestApp.postgresURL != nil
                    && ProcessInfo.processInfo.environment["RESTART_PG_URL"] != nil,
                "needs the restartable PostgreSQL cluster from scripts/test (RESTART_PG_URL)"))
struct PostgresRestartTests {
    static let env = ProcessInfo.processInfo.environment
    static let admin = "restart-admin-key-0123456789"

    static func pgctl(_ action: String) async throws {
        // Through python: the postmaster pg_ctl starts must not inherit this process's open
        // descriptors (Foundation would wait on them and never see `sh` exit) or blocked signals.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", """
            import os, signal, sys
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.closerange(3, 65536)
            os.execv("/bin/sh", ["sh", "-c", sys.argv[1]])
            """, env[action == "stop" ? "RESTART_PG_STOP" : "RESTART_PG_START"]!]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        guard await AppProcess.exited(p, timeout: 60), p.terminationStatus == 0 else { throw CancellationError() }
    }

    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var statuses: [Int: Int] = [:]
        private var stopped = false
        var isStopped: Bool { lock.withLock { stopped } }
        func stop() { lock.withLock { stopped = true } }
        private var badShapes: [String] = []
        func add(_ a: AppProcess.Answer?) {
            lock.withLock {
                let status = a?.status ?? 0
                statuses[status, default: 0] += 1
                if let a, a.status >= 400 {
                    let json = (try? JSONSerialization.jsonObject(with: Data(a.body.utf8))) as? [String: Any]
                    if json?["success"] as? Bool != false || (json?["error"] as? [String: Any])?["code"] == nil { badShapes.append(a.body) }
                }
            }
        }
        var seen503: Bool { lock.withLock { statuses[503, default: 0] > 0 } }
        func take() -> ([Int: Int], [String]) { lock.withLock { defer { statuses = [:]; badShapes = [] }; return (statuses, badShapes) } }
    }

    @Test func requestsFailCleanlyWhileDownAndRecoverAfter() async throws {
        let port = AppProcess.freePort()
        let environment = try AppProcess.environment(database: .postgres(url: Self.env["RESTART_PG_URL"]!), extra: ["ADMIN_API_KEY": Self.admin])
        let server = try AppProcess.serve(port: port, environment: environment)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.waitForHealth(port: port))
        _ = await AppProcess.request("POST", port: port, "api/admin/import", bearer: Self.admin, json: ["users": [
            ["id": "creator", "name": "Coach", "email": "coach@example.com", "role": "creator"],
            ["id": "m1", "name": "Member", "email": "m1@example.com"],
        ]])
        let keys = await JWTVerifier.make(.init(secret: TestCredentials.jwtSecret, issuer: nil, audience: nil), clock: .system)
        let creator = try await keys.sign(userID: "creator", expiresIn: 3600)
        let member = try await keys.sign(userID: "m1", expiresIn: 3600)

        // Readers and writers, 4 at a time, until told to stop (a flag, not cancellation: an
        // async URLSession call on Linux may never return once its task is cancelled).
        let tally = Tally()
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<4 {
                    group.addTask {
                        while !tally.isStopped {
                            if i == 0 {
                                tally.add(await AppProcess.request("POST", port: port, "api/creator/streams/create", bearer: creator,
                                                                   json: ["creatorId": "creator", "title": "Load", "isScheduled": true,
                                                                          "startTime": ISO8601.string(Date().addingTimeInterval(86_400))], timeout: 60))
                            } else {
                                tally.add(await AppProcess.request("GET", port: port, "api/streams/live", bearer: member, timeout: 60))
                            }
                            try? await Task.sleep(for: .milliseconds(20)) // not cancelled: see above
                        }
                    }
                }
            }
        }
        defer { tally.stop() }
        try await Task.sleep(for: .seconds(2))
        let (before, beforeShapes) = tally.take()
        #expect(Set(before.keys).isSubset(of: [200, 201]), "before the restart: \(before)")
        #expect(beforeShapes.isEmpty)

        try await Self.pgctl("stop")
        // Down for 5 s, and until the load has met the outage (however slow the machine; at most 60 s).
        try await Task.sleep(for: .seconds(5))
        _ = try await DeliveryResilienceTests.waitUntil(timeout: 55) { tally.seen503 }
        let (during, duringShapes) = tally.take()
        let ready = await AppProcess.request("GET", port: port, "ready")
        try await Self.pgctl("start")
        #expect(during[503, default: 0] > 0, "nothing failed while PostgreSQL was down? \(during)")
        #expect(Set(during.keys).isSubset(of: [200, 201, 503]), "while down: \(during)")
        #expect(duringShapes.isEmpty, "error bodies not in the API's shape: \(duringShapes.prefix(3))")
        #expect(ready?.status == 503)

        // Recovers by itself: within 120 s every request succeeds again.
        var recovered = false
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && !recovered {
            try await Task.sleep(for: .seconds(1))
            let (window, _) = tally.take()
            recovered = !window.isEmpty && Set(window.keys).isSubset(of: [200, 201])
        }
        #expect(recovered, "still failing 120 s after PostgreSQL came back")
        tally.stop()
        await load.value
        let (_, afterShapes) = tally.take()
        #expect(afterShapes.isEmpty)
        #expect(await AppProcess.request("GET", port: port, "ready")?.status == 200)
        server.terminate()
        #expect(await AppProcess.exited(server, timeout: 60))
    }
}
