import Foundation
import Logging

/// Scrubs what must never reach a log — credentials in headers (Vapor's trace logs print request
/// heads), SQL bind values (they carry emails), unsubscribe tokens in paths, email addresses —
/// from every log line, in production and development alike.
enum Redaction {
    private static let rules: [(NSRegularExpression, String)] = [
        (#"(?i)(authorization|agora-signature-v2|x-amz-security-token|cookie)(\s*[:=]\s*)[^;\r\n\]"]*"#, "$1$2[redacted]"),
        (#"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"#, "Bearer [redacted]"),
        (#"/unsubscribe/[^\s"?;/\]]+"#, "/unsubscribe/[redacted]"),
        (#"(?i)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=[^&\s"]+"#, "$1=[redacted]"),
        (#"[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})"#, "***@$1"),
    ].map { (try! NSRegularExpression(pattern: $0.0), $0.1) }

    /// Cheap pre-check so ordinary lines (access logs) skip the regular expressions.
    private static let triggers = ["@", "earer", "uthorization", "ignature", "/unsubscribe/", "X-Amz-", "ookie", "ecurity-"]

    static func scrub(_ text: String) -> String {
        guard triggers.contains(where: { text.contains($0) }) else { return text }
        var out = text
        for (regex, template) in rules {
            out = regex.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: template)
        }
        return out
    }

    /// Metadata keys whose values are dropped whole.
    static let droppedKeys: Set<String> = ["binds", "password", "secret", "token", "authorization"]

    static func scrub(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let s): .string(scrub(s))
        case .stringConvertible(let c): .string(scrub(c.description))
        case .array(let a): .array(a.map(scrub))
        case .dictionary(let d): .dictionary(scrub(d))
        }
    }

    static func scrub(_ metadata: Logger.Metadata) -> Logger.Metadata {
        var out: Logger.Metadata = [:]
        for (k, v) in metadata { out[k] = droppedKeys.contains(k.lowercased()) ? .string("[redacted]") : scrub(v) }
        return out
    }
}

/// Wraps any handler (JSON lines in production, Vapor's console logger in development).
struct RedactingLogHandler: LogHandler {
    var wrapped: any LogHandler

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }
    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }
    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        // Handler-level metadata (e.g. the request id) is ours; only what arrives with the line is scrubbed.
        wrapped.log(level: level, message: "\(Redaction.scrub(message.description))", metadata: metadata.map(Redaction.scrub),
                    source: source, file: file, function: function, line: line)
    }
}
