import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import App

/// The real App binary (APP_BINARY, built by scripts/test) as a child process, production mode.
enum AppProcess {
    /// A TCP port nothing listens on now, chosen by the kernel (random numbers could land on a port
    /// that another test's outgoing connection holds: the ephemeral range starts at 32768).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket() failed")
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        precondition(bound, "bind() failed")
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// What a process's log says about why it stopped: from Swift's crash report (the fatal error and
    /// the crashed thread's frames, not the register dump at its end), else the log's last lines.
    static func crashReport(_ log: String?) -> String {
        guard let log else { return "(no log)" }
        for marker in ["Fatal error", "💣", "Program crashed"] {
            if let r = log.range(of: marker) { return String(log[r.lowerBound...].prefix(4000)) }
        }
        return String(log.suffix(1500))
    }

    static let env = ProcessInfo.processInfo.environment
    static var available: Bool { env["APP_BINARY"] != nil }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// Required settings plus the strict sink (STARTTLS + AUTH) as the mail relay.
    static func environment(database: AppConfig.DatabaseChoice, extra: [String: String] = [:]) throws -> [String: String] {
        var vars: [String: String] = [
            "JWT_SECRET": TestCredentials.jwtSecret, "AGORA_APP_ID": TestCredentials.agoraAppId,
            "AGORA_APP_CERTIFICATE": TestCredentials.agoraCert, "EMAIL_TRANSPORT": "smtp", "SMTP_HOST": "localhost",
            "SMTP_PORT": env["SMTP_SINK_PORT"]!, "SMTP_SECURITY": "starttls", "SMTP_USERNAME": env["SMTP_SINK_USER"]!,
            "SMTP_PASSWORD": env["SMTP_SINK_PASSWORD"]!, "SMTP_CA_FILE": env["SMTP_TEST_CA_FILE"]!,
            "EMAIL_FROM": "Fit Live <live@fit.example.com>", "FRONTEND_URL": TestCredentials.frontend, "LOG_LEVEL": "warning",
            "PUBLIC_BASE_URL": "https://api.fit.example.com", "PATH": env["PATH"] ?? "/usr/bin:/bin",
        ]
        switch database {
        case .postgres(let url): vars["DATABASE_URL"] = url
        case .sqliteFile(let path): vars["SQLITE_PATH"] = path
        case .sqliteMemory: throw CancellationError()
        }
        return vars.merging(extra) { $1 }
    }

    /// `output`: a file that receives stdout and stderr (else both are discarded).
    static func start(_ arguments: [String], environment: [String: String], output: URL? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: env["APP_BINARY"]!)
        p.arguments = arguments + ["--env", "production"]
        p.environment = environment
        p.currentDirectoryURL = root
        if let output {
            FileManager.default.createFile(atPath: output.path, contents: nil)
            let handle = try FileHandle(forWritingTo: output)
            p.standardOutput = handle
            p.standardError = handle
        } else {
            p.standardOutput = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    static func serve(port: Int, environment: [String: String], output: URL? = nil) throws -> Process {
        try start(["serve", "--hostname", "127.0.0.1", "--port", "\(port)"], environment: environment, output: output)
    }

    /// Polls instead of Process.waitUntilExit(), which spins a CPU on Linux.
    static func exited(_ p: Process, timeout: TimeInterval = 120) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        return !p.isRunning
    }

    struct Answer { let status: Int; let body: String; let headers: [String: String] }

    static func request(_ method: String, port: Int, _ path: String, bearer: String? = nil, headers: [String: String] = [:],
                        json: Any? = nil, timeout: TimeInterval = 60) async -> Answer? {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/\(path)")!)
        request.httpMethod = method
        request.timeoutInterval = timeout
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        if let json {
            request.httpBody = try? JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        guard let (data, response) = try? await URLSession.shared.data(for: request), let http = response as? HTTPURLResponse else { return nil }
        var fields: [String: String] = [:]
        for (k, v) in http.allHeaderFields { fields[String(describing: k).lowercased()] = String(describing: v) }
        return Answer(status: http.statusCode, body: String(decoding: data, as: UTF8.self), headers: fields)
    }

    static func waitForHealth(port: Int, timeout: TimeInterval = 180) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if await request("GET", port: port, "health", timeout: 2)?.status == 200 { return true }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return false
    }
}
