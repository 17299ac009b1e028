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
            chmod(url.path, 0o600) // a file from before this rule, or copied in with a wider mode
            return secrets
        }
        let secrets = DevSecrets(
            jwtSecret: randomHex(32), adminAPIKey: "dev-admin-" + randomHex(16),
            // Placeholder Agora credentials: tokens are well-formed but Agora will reject them
            // until real AGORA_APP_ID / AGORA_APP_CERTIFICATE are set.
            agoraAppId: randomHex(16), agoraAppCertificate: randomHex(16)
        )
        try PrivateFiles.directory(directory)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try PrivateFiles.write(encoder.encode(secrets), to: url.path)
        return secrets
    }

    static func randomHex(_ bytes: Int) -> String {
        SymmetricKey(size: .init(bitCount: bytes * 8)).withUnsafeBytes { Hex.lower($0) }
    }
}

/// Files only this user may read, created that way (no moment at the umask's 0644).
enum PrivateFiles {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Creates the directory (0700) if it is missing; an existing one is left as it is.
    static func directory(_ path: String) throws {
        guard !FileManager.default.fileExists(atPath: path) else { return }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    /// Writes `data` to a new 0600 temporary file beside `path`, then renames it over `path`.
    static func write(_ data: Data, to path: String) throws {
        let temp = path + ".tmp-\(UUID().uuidString.prefix(8))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temp): errno \(errno)") }
        let written = data.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == data.count, rename(temp, path) == 0 else {
            unlink(temp)
            throw Failure(description: "cannot write \(path)")
        }
    }

    /// Creates an empty 0600 file if none exists (SQLite then opens it, and gives its -wal and
    /// -shm files the same mode).
    static func touch(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd); return }
        guard errno == EEXIST else { throw Failure(description: "cannot create \(path): errno \(errno)") }
        chmod(path, 0o600) // an existing database file created with the umask's mode
    }
}
