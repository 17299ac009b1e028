import Crypto
import Foundation

/// Development-only secrets, generated once and kept in `data/dev-secrets.json` so dev tokens
/// survive restarts. Never used in production.
struct DevSecrets: Codable, Sendable {
    var jwtSecret: String
    var adminAPIKey: String
    var agoraAppId: String
    var agoraAppCertificate: String

    static func loadOrCreate(directory: String) throws -> DevSecrets {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("dev-secrets.json")
        if let data = try? Data(contentsOf: url), let secrets = try? JSONDecoder().decode(DevSecrets.self, from: data) {
            return secrets
        }
        let secrets = DevSecrets(
            jwtSecret: randomHex(32), adminAPIKey: "dev-admin-" + randomHex(16),
            // Placeholder Agora credentials: tokens are well-formed but Agora will reject them
            // until real AGORA_APP_ID / AGORA_APP_CERTIFICATE are set.
            agoraAppId: randomHex(16), agoraAppCertificate: randomHex(16)
        )
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(secrets).write(to: url, options: .atomic)
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.path)
        return secrets
    }

    static func randomHex(_ bytes: Int) -> String {
        SymmetricKey(size: .init(bitCount: bytes * 8)).withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
    }
}
