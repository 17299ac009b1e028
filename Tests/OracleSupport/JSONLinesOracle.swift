import Foundation

/// An independent implementation (a Python script in scripts/) driven over JSON Lines: one request
/// object per line in, one reply per line out. The test command sets AGORA_ORACLE_PYTHON to the
/// project venv and REQUIRE_ORACLES=1, so a missing oracle fails the run instead of skipping.
public final class JSONLinesOracle: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffer = Data()

    public static var python: String? { ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"] }
    public static var available: Bool { python != nil || ProcessInfo.processInfo.environment["REQUIRE_ORACLES"] == "1" }

    /// `script` is relative to the repository root, e.g. "scripts/s3/sigv4_oracle.py".
    public init(script: String) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard let python = Self.python else { throw OracleError.notConfigured }
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [root.appendingPathComponent(script).path]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        try? input.fileHandleForWriting.close()
        // Not waitUntilExit(): on Linux it spins a CPU in the run loop.
        for _ in 0..<200 where process.isRunning { usleep(10_000) }
    }

    /// One request, one reply; a reply carrying "error" throws.
    public func call(_ request: [String: Any]) throws -> [String: Any] {
        input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: request) + Data("\n".utf8))
        while !buffer.contains(10) {
            let chunk = output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw OracleError.closed }
            buffer += chunk
        }
        let newline = buffer.firstIndex(of: 10)!
        let line = buffer.prefix(upTo: newline)
        buffer = Data(buffer.suffix(from: newline + 1))
        let reply = try JSONSerialization.jsonObject(with: line) as! [String: Any]
        if let error = reply["error"] { throw OracleError.failed("\(error)") }
        return reply
    }

    public enum OracleError: Error { case notConfigured, closed, failed(String) }
}
