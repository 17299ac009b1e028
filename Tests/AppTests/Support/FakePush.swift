import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import App

/// scripts/push/fake_push.py: fake APNs (HTTP/2 over TLS) + FCM + OAuth token endpoint, with the
/// keys, service account and CA it generated; its control port reports what it received.
final class FakePush: @unchecked Sendable {
    let process: Process
    let directory: URL
    let settings: PushSettings
    let controlURL: String

    static var available: Bool { PythonOracle.available }

    init(latencyMilliseconds: Int = 0) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("fake-push-\(UUID().uuidString)")
        let python = ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"]!
        process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [AppProcess.root.appendingPathComponent("scripts/push/fake_push.py").path, "--dir", directory.path,
                             "--latency-ms", String(latencyMilliseconds)]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = ""
        while !line.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            line += String(decoding: chunk, as: UTF8.self)
        }
        guard line.hasPrefix("READY") else { throw CancellationError() }
        let s = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("settings.json"))) as! [String: String]
        controlURL = s["controlURL"]!
        var settings = PushSettings()
        settings.apns = .init(keyPEM: try String(contentsOf: directory.appendingPathComponent("apns.p8"), encoding: .utf8),
                              keyID: s["keyId"]!, teamID: s["teamId"]!, topic: s["topic"]!, baseURL: s["baseURL"]!)
        var problems: [String] = []
        let account = directory.appendingPathComponent("service-account.json").path
        let base = s["baseURL"]!
        settings.fcm = PushSettings.load(value: { ["FCM_SERVICE_ACCOUNT_PATH": account, "FCM_BASE_URL": base][$0] }, problems: &problems).fcm
        settings.caFile = directory.appendingPathComponent("ca.pem").path
        self.settings = settings
        // Wait until it answers.
        for _ in 0..<100 where (try? Self.fetchLog(controlURL)) == nil { usleep(50_000) }
    }

    func log() async throws -> [String: Any] {
        let url = controlURL
        let data = try await Blocking.run { try Self.fetchLog(url) }
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    private static func fetchLog(_ controlURL: String) throws -> Data {
        try Data(contentsOf: URL(string: controlURL + "/_log")!)
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: directory)
    }
}
