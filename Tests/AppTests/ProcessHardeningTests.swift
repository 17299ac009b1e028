import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import App

/// Issue 16, findings 1, 2 and 9: the real binary as a process (APP_BINARY, built by scripts/test).
@Suite(.serialized, .enabled(if: AppProcess.available, "needs APP_BINARY (scripts/test)"))
struct ProcessHardeningTests {
    static let admin = "process-admin-key-0123456789"
    static let cron = "process-cron-secret-0123456789"

    /// A production server on a fresh SQLite file (no mail relay unless `extra` says so).
    static func environment(_ dir: URL, extra: [String: String] = [:]) -> [String: String] {
        [
            "JWT_SECRET": TestCredentials.jwtSecret, "AGORA_APP_ID": TestCredentials.agoraAppId,
            "AGORA_APP_CERTIFICATE": TestCredentials.agoraCert, "ADMIN_API_KEY": admin, "CRON_SECRET": cron,
            "SQLITE_PATH": dir.appendingPathComponent("app.sqlite").path, "LOG_LEVEL": "notice",
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
        ].merging(extra) { $1 }
    }

    static func launch(_ arguments: [String], environment: [String: String], output: URL) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: AppProcess.env["APP_BINARY"]!)
        p.arguments = arguments
        p.environment = environment
        p.currentDirectoryURL = AppProcess.root
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    static func scratch(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    // MARK: 1. SIGTERM during a request: the request completes, the process exits 0

    @Test func sigtermDrainsTheRequestInFlightThenExitsCleanly() async throws {
        let dir = try Self.scratch("drain")
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = AppProcess.freePort()
        let log = dir.appendingPathComponent("app.log")
        // The drain's own limit far above what a loaded machine needs to finish the import (its default is 10 s).
        let server = try Self.launch(["serve", "--env", "production", "--hostname", "127.0.0.1", "--port", "\(port)"],
                                     environment: Self.environment(dir, extra: ["SHUTDOWN_DRAIN_SECONDS": "120"]), output: log)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.waitForHealth(port: port, timeout: 180), "server did not start")

        let users = (0..<300).map { ["id": "drain-\($0)", "name": "Member \($0)", "email": "drain\($0)@example.com"] }
        let body = try JSONSerialization.data(withJSONObject: ["users": users])
        let head = "POST /api/admin/import HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(Self.admin)\r\n"
            + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        let socket = try RawHTTP(port: port)
        defer { socket.close() }
        try socket.send(Data(head.utf8) + body.prefix(body.count / 2))
        try await Task.sleep(for: .seconds(2)) // the server has read the request's head (a loaded machine is slow to)
        kill(server.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(700))
        #expect(server.isRunning, "the process must wait for the request in flight")
        try socket.send(body.suffix(from: body.count / 2))
        let reply = try await Blocking.run { socket.receiveAll(timeout: 60) }
        #expect(reply.hasPrefix("HTTP/1.1 200"), "reply: \(reply.prefix(300))")
        #expect(reply.contains("\"users\":300"), "reply: \(reply.prefix(300))")
        #expect(await AppProcess.exited(server, timeout: 60))
        #expect(server.terminationReason == .exit && server.terminationStatus == 0,
                "exit \(server.terminationStatus): \((try? String(contentsOf: log, encoding: .utf8))?.suffix(2000) ?? "")")
        // Nothing half-written: all 300 users arrived.
        let text = try String(contentsOf: log, encoding: .utf8)
        #expect(text.contains("requests drained"), "\(text.suffix(1500))")
    }

    // MARK: 2. 50 parallel writers on SQLite: no answer ≥ 500

    @Test func fiftyParallelWritersOnSQLiteGetNoServerError() async throws {
        let dir = try Self.scratch("writers")
        defer { try? FileManager.default.removeItem(at: dir) }
        let port = AppProcess.freePort()
        let log = dir.appendingPathComponent("app.log")
        let server = try Self.launch(["serve", "--env", "production", "--hostname", "127.0.0.1", "--port", "\(port)"],
                                     environment: Self.environment(dir, extra: ["RATE_LIMIT_ENABLED": "false", "EMAIL_TRANSPORT": "outbox"]),
                                     output: log)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.waitForHealth(port: port), "server did not start")

        // A creator with 300 followers, so going live makes the worker write a fan-out meanwhile.
        let followers = (0..<300).map { ["id": "f\($0)", "name": "Follower \($0)", "email": "f\($0)@example.com"] }
        let seeded = await AppProcess.request("POST", port: port, "api/admin/import", bearer: Self.admin, json: [
            "users": [["id": "coach", "name": "Coach", "email": "coach@example.com", "role": "creator"]] + followers,
            "follows": (0..<300).map { ["followerId": "f\($0)", "followedId": "coach"] },
        ], timeout: 60)
        #expect(seeded?.status == 200)
        let keys = await JWTVerifier.make(.init(secret: TestCredentials.jwtSecret, issuer: nil, audience: nil), clock: .system)
        let coach = try await keys.sign(userID: "coach", expiresIn: 3600)
        let member = try await keys.sign(userID: "f1", expiresIn: 3600)

        let statuses = await withTaskGroup(of: (String, Int).self) { group in
            for i in 0..<50 {
                group.addTask {
                    switch i % 5 {
                    case 0: // imports of 300 users each
                        let users = (0..<300).map { ["id": "w\(i)-\($0)", "name": "W \($0)", "email": "w\(i)-\($0)@example.com"] }
                        let r = await AppProcess.request("POST", port: port, "api/admin/import", bearer: Self.admin, json: ["users": users], timeout: 120)
                        return ("import", r?.status ?? -1)
                    case 1: // streams created and taken live (fan-outs for the worker)
                        let r = await AppProcess.request("POST", port: port, "api/creator/streams/create", bearer: coach,
                                                         json: ["creatorId": "coach", "title": "Class \(i)", "isScheduled": i % 2 == 0,
                                                                "startTime": ISO8601.string(Date().addingTimeInterval(600))], timeout: 120)
                        return ("create", r?.status ?? -1)
                    case 2:
                        let r = await AppProcess.request("PUT", port: port, "api/me/notification-preferences", bearer: member,
                                                         json: ["reminder": i % 2 == 0, "mutedCreators": []], timeout: 120)
                        return ("preferences", r?.status ?? -1)
                    case 3: // the cron reminder pass (reads, then writes)
                        let r = await AppProcess.request("GET", port: port, "api/cron/check-stream-reminders", bearer: Self.cron, timeout: 120)
                        return ("cron", r?.status ?? -1)
                    default:
                        let r = await AppProcess.request("PUT", port: port, "api/admin/users/u\(i)", bearer: Self.admin,
                                                         json: ["name": "User \(i)", "email": "u\(i)@example.com"], timeout: 120)
                        return ("upsert", r?.status ?? -1)
                    }
                }
            }
            var all: [(String, Int)] = []
            for await s in group { all.append(s) }
            return all
        }
        let bad = statuses.filter { $0.1 >= 500 || $0.1 < 0 }
        #expect(bad.isEmpty, "server errors: \(bad) — \((try? String(contentsOf: log, encoding: .utf8))?.suffix(2000) ?? "")")
        #expect(statuses.count == 50)
        server.terminate()
        #expect(await AppProcess.exited(server, timeout: 60))
    }

    // MARK: 9. Development mode only on loopback; its files private from the start

    @Test func developmentModeRefusesAPublicBindAndKeepsItsFilesPrivate() async throws {
        let dir = try Self.scratch("devmode")
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["DATA_DIRECTORY": dir.appendingPathComponent("data").path, "LOG_LEVEL": "info",
                   "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        let refusedLog = dir.appendingPathComponent("refused.log")
        let port = AppProcess.freePort()
        let refused = try Self.launch(["serve", "--env", "development", "--hostname", "0.0.0.0", "--port", "\(port)"], environment: env, output: refusedLog)
        defer { if refused.isRunning { kill(refused.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.exited(refused, timeout: 60))
        #expect(refused.terminationStatus == 1)
        let said = try String(contentsOf: refusedLog, encoding: .utf8)
        #expect(said.contains("--env production") && !said.contains("Development tokens") && !said.contains("dev-admin-"), "\(said)")

        let okLog = dir.appendingPathComponent("ok.log")
        let localPort = AppProcess.freePort()
        let local = try Self.launch(["serve", "--env", "development", "--hostname", "127.0.0.1", "--port", "\(localPort)"], environment: env, output: okLog)
        defer { if local.isRunning { kill(local.processIdentifier, SIGKILL) } }
        // Generous: migrations and demo data on a fresh file while every other suite runs on 2 cores.
        #expect(await AppProcess.waitForHealth(port: localPort, timeout: 180), "dev server did not start: \(AppProcess.crashReport(try? String(contentsOf: okLog, encoding: .utf8)))")
        func mode(_ path: String) -> Int? { (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int }
        let data = dir.appendingPathComponent("data").path
        #expect(mode(data) == 0o700)
        #expect(mode(data + "/dev-secrets.json") == 0o600)
        #expect(mode(data + "/app.sqlite") == 0o600)
        if FileManager.default.fileExists(atPath: data + "/app.sqlite-wal") { #expect(mode(data + "/app.sqlite-wal") == 0o600) }
        // A second server on the taken port says why and exits 1 (no crash report).
        var otherEnv = env
        otherEnv["DATA_DIRECTORY"] = dir.appendingPathComponent("other").path
        let takenLog = dir.appendingPathComponent("taken.log")
        let taken = try Self.launch(["serve", "--env", "development", "--hostname", "127.0.0.1", "--port", "\(localPort)"], environment: otherEnv, output: takenLog)
        defer { if taken.isRunning { kill(taken.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.exited(taken, timeout: 120))
        let takenSaid = (try? String(contentsOf: takenLog, encoding: .utf8)) ?? ""
        #expect(taken.terminationStatus == 1 && takenSaid.contains("Cannot start") && takenSaid.contains("Address already in use")
                && !takenSaid.contains("Fatal error"), "\(takenSaid.suffix(800))")
        local.terminate()
        #expect(await AppProcess.exited(local, timeout: 60))
        #expect(try String(contentsOf: okLog, encoding: .utf8).contains("Development tokens"))
    }
}

/// A plain TCP client, for sending a request in pieces.
final class RawHTTP: @unchecked Sendable {
    private let fd: Int32

    struct Failure: Error { let what: String }

    init(port: Int) throws {
        fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(what: "socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { Glibc.close(fd); throw Failure(what: "connect") }
    }

    func send(_ data: Data) throws {
        var offset = 0
        while offset < data.count {
            let n = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, data.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(what: "send") }
            offset += n
        }
    }

    /// Everything until the server closes the connection (or the timeout).
    func receiveAll(timeout: TimeInterval) -> String {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = Glibc.recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    func close() { Glibc.close(fd) }
}
