@testable import App
import Foundation
import Logging
import Testing

/// The production log line is written by hand (every request logs one): it must be the JSON that
/// Foundation's parser reads back to the same values, keys sorted, one line.
@Suite struct LogFormatTests {
    @Test func handWrittenJSONReadsBackAsTheSameValues() throws {
        let nasty = ["plain", "quote \" and backslash \\", "new\nline\r\ttab\u{08}\u{0C}", "ctrl \u{01}\u{1F}\u{7F}", "slash / ok",
                     "émoji 🏋️‍♀️ 中文", "", "{\"json\": [1]}"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var metadata: Logger.Metadata = [:]
            for i in 0..<Int.random(in: 1...6, using: &generator) {
                let key = nasty.randomElement(using: &generator)! + "\(i)"
                let leaf = Logger.Metadata.Value.string(nasty.randomElement(using: &generator)!)
                metadata[key] = switch Int.random(in: 0..<4, using: &generator) {
                case 0: leaf
                case 1: .stringConvertible(Int.random(in: -1000...1000, using: &generator))
                case 2: .array([leaf, .string(nasty.randomElement(using: &generator)!)])
                default: .dictionary(["inner": leaf, "z": .array([])])
                }
            }
            var bytes: [UInt8] = []
            JSONLogHandler.write(.dictionary(metadata), into: &bytes)
            #expect(!bytes.contains(0x0A), "one line")
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? NSDictionary)
            #expect(parsed == plain(.dictionary(metadata)) as? NSDictionary)
            // Keys in sorted order, as before.
            let keys = metadata.keys.sorted()
            let text = String(decoding: bytes, as: UTF8.self)
            var position = text.startIndex
            for key in keys {
                var quoted: [UInt8] = []
                JSONLogHandler.quote(key, into: &quoted)
                let needle = String(decoding: quoted, as: UTF8.self) + ":"
                let found = try #require(text.range(of: needle, range: position..<text.endIndex))
                position = found.upperBound
            }
        }
    }

    /// The byte search that lets ordinary lines skip the scrubbing finds exactly what a plain
    /// substring search finds (every trigger, at the start, the end, overlapping, absent).
    @Test func scrubPrecheckAgreesWithSubstringSearch() {
        let triggers = ["@", "earer", "uthorization", "ignature", "/unsubscribe/", "X-Amz-", "ookie", "ecurity-", "=", "HTTPRequestHead",
                        "HTTP part: body"]
        let pieces = triggers.flatMap { [$0, String($0.dropLast()), String($0.dropFirst())] } + ["a", " ", "é", "request", "/api/x"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let text = (0..<Int.random(in: 0...4, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            #expect(Redaction.mayNeedScrubbing(text) == triggers.contains { text.contains($0) }, "\(text)")
        }
    }

    private func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let s): s
        case .stringConvertible(let c): c.description
        case .array(let a): a.map(plain)
        case .dictionary(let d): d.mapValues(plain)
        }
    }
}
