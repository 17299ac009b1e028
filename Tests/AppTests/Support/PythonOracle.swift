import Foundation

/// Runs one of scripts/oracles/*.py with the oracle venv's Python (AGORA_ORACLE_PYTHON, set by
/// scripts/test): `input` on stdin, stdout returned.
enum PythonOracle {
    static var available: Bool { ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"] != nil }

    static func run(_ script: String, arguments: [String] = [], input: Data) async throws -> Data {
        try await Blocking.run { try runBlocking(script, arguments: arguments, input: input) }
    }

    private static func runBlocking(_ script: String, arguments: [String], input: Data) throws -> Data {
        let python = ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"]!
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/oracles/\(script)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [path] + arguments
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(10_000) }
        return out
    }
}
