import Foundation
import Logging

/// Production log format: one JSON object per line on stdout (time, level, label, message,
/// metadata), so a log pipeline can index request ids and fields without parsing prose.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        logLevel = level
        self.metadataProvider = metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// One writer at a time, so lines from different threads never interleave.
    private static let lock = NSLock()

    func log(event: LogEvent) {
        var fields = metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { $1 } }
        if let explicit = event.metadata { fields.merge(explicit) { $1 } }
        if let error = event.error { fields["error"] = .string(String(describing: error)) }
        let level = event.level, message = event.message
        fields["level"] = .string(level.rawValue)
        fields["label"] = .string(label)
        fields["message"] = .string(message.description)
        fields["time"] = .string(ISO8601.string(Date()))
        var line: [UInt8] = []
        line.reserveCapacity(256)
        Self.write(.dictionary(fields), into: &line)
        line.append(0x0A)
        Self.lock.withLock { FileHandle.standardOutput.write(Data(line)) }
    }

    /// JSON with sorted keys and unescaped slashes (what JSONSerialization gave with
    /// `.sortedKeys, .withoutEscapingSlashes`), written by hand: every request logs a line.
    static func write(_ value: Logger.Metadata.Value, into out: inout [UInt8]) {
        switch value {
        case .string(let s): quote(s, into: &out)
        case .stringConvertible(let c): quote(c.description, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                write(v, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let d):
            out.append(UInt8(ascii: "{"))
            for (i, key) in d.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                quote(key, into: &out)
                out.append(UInt8(ascii: ":"))
                write(d[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static let hex = Array("0123456789abcdef".utf8)

    /// A JSON string: `"` and `\` escaped, control characters as \n, \t… or \u00XX, the rest as UTF-8.
    static func quote(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [92, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [92, UInt8(ascii: "f")])
            case 0..<0x20: out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
