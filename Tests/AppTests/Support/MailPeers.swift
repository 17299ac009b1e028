import Foundation
import Mailer

/// The SMTP peers scripts/test starts (see scripts/mail/start_peers.sh).
enum MailPeers {
    static let env = ProcessInfo.processInfo.environment
    static var available: Bool { env["SMTP_SINK_PORT"] != nil }

    static func sinkConfiguration(port: Int? = nil) -> SMTPConfiguration {
        SMTPConfiguration(host: "localhost", port: port ?? Int(env["SMTP_SINK_PORT"]!)!, security: .starttls,
                          username: env["SMTP_SINK_USER"], password: env["SMTP_SINK_PASSWORD"], caFile: env["SMTP_TEST_CA_FILE"],
                          heloName: "apptests.local", timeouts: .init()) // the product's own patience: a loaded machine answers slowly
    }

    /// Every stored sink message whose envelope recipient contains `marker`: address → [.eml path].
    static func sinkMessages(containing marker: String, in dir: String? = nil) -> [String: [String]] {
        let dir = dir ?? env["SMTP_SINK_DIR"]!
        var result: [String: [String]] = [:]
        for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where file.hasSuffix(".json") {
            guard let data = FileManager.default.contents(atPath: dir + "/" + file),
                  let envelope = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let rcpts = envelope["rcpt_tos"] as? [String] else { continue }
            for r in rcpts where r.contains(marker) { result[r, default: []].append(dir + "/" + file.dropLast(5) + ".eml") }
        }
        return result
    }

    /// Python's `email` package parsing many files in one process.
    static func parse(_ paths: [String]) async throws -> [[String: Any]] {
        guard !paths.isEmpty else { return [] }
        let data = try await Blocking.run { try parseOutput(paths) }
        return try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
    }

    private static func parseOutput(_ paths: [String]) throws -> Data {
        let command = env["MAIL_PARSE"]!.split(separator: " ").map(String.init)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst()) + paths
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(10_000) } // waitUntilExit spins a CPU on Linux
        return data
    }
}
