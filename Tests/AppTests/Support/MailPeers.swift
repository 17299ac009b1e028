import Foundation
import Mailer

/// The SMTP peers scripts/test starts (see scripts/mail/start_peers.sh).
enum MailPeers {
    static let env = ProcessInfo.processInfo.environment
    static var available: Bool { env["SMTP_SINK_PORT"] != nil }

    static func sinkConfiguration(port: Int? = nil) -> SMTPConfiguration {
        SMTPConfiguration(host: "localhost", port: port ?? Int(env["SMTP_SINK_PORT"]!)!, security: .starttls,
                          username: env["SMTP_SINK_USER"], password: env["SMTP_SINK_PASSWORD"], caFile: env["SMTP_TEST_CA_FILE"],
                          heloName: "apptests.local", timeouts: .init(connect: 2, reply: 10, dataEnd: 10))
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
    static func parse(_ paths: [String]) throws -> [[String: Any]] {
        guard !paths.isEmpty else { return [] }
        let command = env["MAIL_PARSE"]!.split(separator: " ").map(String.init)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst()) + paths
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
    }

    /// Python's zoneinfo formatting (scripts/oracles/zone_format.py): zone → (local text, tzname, offset).
    static func zoneinfo(epoch: Int, zones: [String]) throws -> [String: (local: String, tzname: String, offset: Int)] {
        let python = env["AGORA_ORACLE_PYTHON"]!
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/oracles/zone_format.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(zones.map { "{\"epoch\": \(epoch), \"zone\": \"\($0)\"}\n" }.joined().utf8))
        try input.fileHandleForWriting.close()
        let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        process.waitUntilExit()
        var result: [String: (String, String, Int)] = [:]
        for (zone, line) in zip(zones, lines) {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            result[zone] = (o["local"] as! String, o["tzname"] as! String, o["offset"] as! Int)
        }
        return result
    }

    /// The label our emails must show for a zoneinfo answer.
    static func expectedLabel(tzname: String, offset: Int) -> String {
        if tzname.allSatisfy(\.isLetter) { return tzname }
        if offset == 0 { return "GMT" }
        let h = abs(offset) / 3600, m = abs(offset) % 3600 / 60, sign = offset < 0 ? "-" : "+"
        return m == 0 ? "GMT\(sign)\(h)" : String(format: "GMT%@%d:%02d", sign, h, m)
    }
}
