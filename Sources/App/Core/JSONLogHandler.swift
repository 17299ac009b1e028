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
        var object: [String: Any] = [:]
        for (k, v) in fields { object[k] = Self.plain(v) }
        object["level"] = level.rawValue
        object["label"] = label
        object["message"] = message.description
        object["time"] = ISO8601.string(Date())
        let line = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        Self.lock.withLock { FileHandle.standardOutput.write(line + Data([0x0A])) }
    }

    private static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let s): s
        case .stringConvertible(let c): c.description
        case .array(let a): a.map(plain)
        case .dictionary(let d): d.mapValues(plain)
        }
    }
}
