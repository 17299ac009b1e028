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
        (#"(?i)([?&](?:access_token|token|secret|key|api_key|apikey|password|signature|code)=)[^&\s"]+"#, "$1[redacted]"),
        (#"[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})"#, "***@$1"),
    ].map { (try! NSRegularExpression(pattern: $0.0), $0.1) }

    /// Cheap pre-check so ordinary lines (access logs) skip the regular expressions.
    private static let triggers = ["@", "earer", "uthorization", "ignature", "/unsubscribe/", "X-Amz-", "ookie", "ecurity-", "=", "HTTPRequestHead",
                                   "HTTP part: body"].map { Array($0.utf8) }

    /// Whether any trigger occurs in `text` (byte search; every log line's message and values pass here).
    static func mayNeedScrubbing(_ text: String) -> Bool {
        var copy = text
        return copy.withUTF8 { bytes in
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return false }
            return triggers.contains { needle in
                // memchr to each candidate first byte, then a compare of the rest.
                var i = 0
                let first = Int32(needle[0]), last = bytes.count - needle.count
                while i <= last, let hit = memchr(base + i, first, last - i + 1) {
                    let j = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
                    if needle.withUnsafeBytes({ memcmp(base + j, $0.baseAddress!, needle.count) }) == 0 { return true }
                    i = j + 1
                }
                return false
            }
        }
    }

    static func scrub(_ text: String) -> String {
        guard mayNeedScrubbing(text) else { return text }
        var out = text.contains("HTTPRequestHead {") ? requestHead(text) : text
        // Vapor's trace log of request body pieces (a hex dump of the first bytes): never kept.
        if let body = out.range(of: "Decoded HTTP part: body(") { out = String(out[..<body.upperBound]) + "[redacted])" }
        for (regex, template) in rules {
            out = regex.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: template)
        }
        return out
    }

    /// Headers whose values may appear in a log (Vapor's trace log prints every request head).
    /// Everything else — credentials, secrets a confused client put in a custom header, cookies,
    /// forwarding chains — is logged by name only.
    static let loggableHeaders: Set<String> = [
        "host", "user-agent", "accept", "accept-encoding", "accept-language", "content-type", "content-length",
        "connection", "transfer-encoding", "expect", "cache-control", "x-request-id", "origin", "x-forwarded-proto",
    ]

    /// `HTTPRequestHead { method: GET, uri: "/p?a=b", version: HTTP/1.1, headers: A: 1; B: 2 }` →
    /// query values and the values of headers not on the allow-list replaced by [redacted].
    static func requestHead(_ text: String) -> String {
        guard let start = text.range(of: "HTTPRequestHead {"),
              let uriStart = text.range(of: "uri: \"", range: start.upperBound..<text.endIndex),
              let uriEnd = text.range(of: "\", version: ", options: .backwards, range: uriStart.upperBound..<text.endIndex),
              let headersStart = text.range(of: "headers: ", range: uriEnd.upperBound..<text.endIndex),
              let end = text.range(of: " }", options: .backwards, range: headersStart.upperBound..<text.endIndex)
        else { return text }
        var uri = String(text[uriStart.upperBound..<uriEnd.lowerBound])
        if let q = uri.firstIndex(of: "?") {
            let query = uri[uri.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false)
                .map { pair in pair.contains("=") ? (pair.split(separator: "=", maxSplits: 1).first.map { "\($0)=[redacted]" } ?? "") : "[redacted]" }
            uri = String(uri[..<q]) + "?" + query.joined(separator: "&")
        }
        var headers: [String] = []
        var keepingValue = false
        for field in text[headersStart.upperBound..<end.lowerBound].components(separatedBy: "; ") {
            let parts = field.split(separator: ":", maxSplits: 1)
            let name = parts.first.map(String.init) ?? ""
            let isHeader = parts.count == 2 && !name.isEmpty && name.utf8.allSatisfy { $0 > 32 && $0 < 127 && $0 != 59 }
            if isHeader {
                keepingValue = loggableHeaders.contains(name.lowercased())
                headers.append(keepingValue ? field : "\(name): [redacted]")
            } else if keepingValue, !headers.isEmpty {
                headers[headers.count - 1] += "; " + field // a value that itself contained "; "
            }
        }
        return String(text[..<uriStart.upperBound]) + uri + String(text[uriEnd.lowerBound..<headersStart.upperBound])
            + headers.joined(separator: "; ") + String(text[end.lowerBound...])
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

    func log(event: LogEvent) {
        // Handler-level metadata (e.g. the request id) is ours; only what arrives with the line is scrubbed.
        var scrubbed = event
        scrubbed.message = "\(Redaction.scrub(event.message.description))"
        scrubbed.metadata = event.metadata.map(Redaction.scrub)
        if let error = event.error { scrubbed.error = RedactedError(description: Redaction.scrub(String(describing: error))) }
        wrapped.log(event: scrubbed)
    }
}

/// An error that reaches a log line only as its scrubbed description.
struct RedactedError: Error, CustomStringConvertible {
    let description: String
}
