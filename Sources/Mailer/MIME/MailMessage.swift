import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// An email as the product sends it: text + optional HTML (multipart/alternative, plain first),
/// optionally wrapped in multipart/mixed with a text/calendar attachment. `render()` produces the
/// RFC 5322 bytes: CRLF line endings, 7-bit clean, every line ≤ 76 octets.
public struct MailMessage: Sendable {
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        /// Structured values (List-Unsubscribe's `<url>`) must not become encoded-words or be folded
        /// inside the URL: they are written on one line (≤ 998 octets), only stripped of line breaks.
        public var verbatim: Bool
        public init(_ name: String, _ value: String, verbatim: Bool = false) { self.name = name; self.value = value; self.verbatim = verbatim }

        public static func listUnsubscribe(_ url: String) -> [Header] {
            [Header("List-Unsubscribe", "<\(url)>", verbatim: true), Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        }
    }

    public struct Calendar: Sendable, Equatable {
        public enum Method: String, Sendable { case publish = "PUBLISH", cancel = "CANCEL" }
        public var method: Method
        public var ics: String
        public var filename: String
        public init(method: Method, ics: String, filename: String = "invite.ics") {
            self.method = method; self.ics = ics; self.filename = filename
        }
    }

    public var from: MailAddress
    public var to: [MailAddress]
    public var subject: String
    public var text: String
    public var html: String?
    public var calendar: Calendar?
    /// Extra headers such as List-Unsubscribe; values are sanitized and folded.
    public var headers: [Header]
    /// Without angle brackets, e.g. `UUID@example.com`.
    public var messageID: String
    public var date: Date

    public init(from: MailAddress, to: [MailAddress], subject: String, text: String, html: String? = nil,
                calendar: Calendar? = nil, headers: [Header] = [], messageID: String? = nil, date: Date = Date()) {
        self.from = from
        self.to = to
        self.subject = subject
        self.text = text
        self.html = html
        self.calendar = calendar
        self.headers = headers
        let domain = from.address.split(separator: "@").last.map(String.init) ?? "localhost"
        self.messageID = messageID ?? "\(UUID().uuidString.lowercased())@\(domain)"
        self.date = date
    }

    public func render() -> String {
        var buffer = renderBuffer()
        return buffer.readString(length: buffer.readableBytes) ?? ""
    }

    /// The message's bytes, written into one buffer (no intermediate strings for the parts).
    public func renderBuffer() -> ByteBuffer {
        var out = ByteBuffer()
        out.reserveCapacity(1_024 + text.utf8.count * 11 / 10 + (html?.utf8.count ?? 0) * 11 / 10 + (calendar?.ics.utf8.count ?? 0) * 14 / 10)
        func line(_ text: String) { out.writeString(text); out.writeStaticString("\r\n") }
        line("Date: " + Self.rfc5322Date(date))
        line(addressField("From", [from]))
        line(addressField("To", to))
        line("Message-ID: <\(messageID)>")
        line(HeaderEncoding.field("Subject", subject))
        line("MIME-Version: 1.0")
        for h in headers where Self.isValidHeaderName(h.name) {
            if h.verbatim {
                let value = HeaderEncoding.sanitize(h.value)
                if value.unicodeScalars.allSatisfy(\.isASCII), h.name.count + 2 + value.utf8.count <= 998 { line(h.name + ": " + value) }
            } else {
                line(HeaderEncoding.field(h.name, h.value))
            }
        }
        let body: Part = {
            let textPart = Part.leaf(contentType: "text/plain; charset=utf-8", body: .quotedPrintable(text))
            var content = textPart
            if let html {
                let htmlPart = Part.leaf(contentType: "text/html; charset=utf-8", body: .quotedPrintable(html))
                content = .multipart(subtype: "alternative", parts: [textPart, htmlPart])
            }
            guard let calendar else { return content }
            let ics = Part.leaf(
                contentType: "text/calendar; charset=utf-8; method=\(calendar.method.rawValue);\r\n name=\"\(Self.safeFilename(calendar.filename))\"",
                body: .base64(calendar.ics), disposition: "attachment; filename=\"\(Self.safeFilename(calendar.filename))\""
            )
            return .multipart(subtype: "mixed", parts: [content, ics])
        }()
        body.writeHeaders(into: &out)
        out.writeStaticString("\r\n")
        body.writeContent(into: &out)
        out.writeStaticString("\r\n")
        return out
    }

    private func addressField(_ name: String, _ list: [MailAddress]) -> String {
        var out = name + ": "
        var used = out.count
        for (i, address) in list.enumerated() {
            if i > 0 { out += ",\r\n "; used = 1 }
            let rendered = address.rendered(lineUsed: used)
            out += rendered
            // Characters on the field's last line: after the last fold, or added to what was used.
            if let fold = rendered.utf8.lastIndex(of: 10) {
                used = rendered[rendered.index(after: fold)...].count
            } else {
                used += rendered.count
            }
        }
        return out
    }

    private indirect enum Part {
        enum Body { case quotedPrintable(String), base64(String) }
        case leaf(contentType: String, body: Body, disposition: String? = nil)
        case multipart(subtype: String, parts: [Part])

        /// The part's header lines, each ending in CRLF.
        func writeHeaders(into out: inout ByteBuffer) {
            switch self {
            case .leaf(let type, let body, let disposition):
                out.writeStaticString("Content-Type: "); out.writeString(type)
                switch body {
                case .quotedPrintable: out.writeStaticString("\r\nContent-Transfer-Encoding: quoted-printable\r\n")
                case .base64: out.writeStaticString("\r\nContent-Transfer-Encoding: base64\r\n")
                }
                if let disposition { out.writeStaticString("Content-Disposition: "); out.writeString(disposition); out.writeStaticString("\r\n") }
            case .multipart(let subtype, let parts):
                out.writeString("Content-Type: multipart/\(subtype);\r\n boundary=\"\(Self.boundary(subtype, parts.count))\"\r\n")
            }
        }

        func writeContent(into out: inout ByteBuffer) {
            switch self {
            case .leaf(_, .quotedPrintable(let text), _):
                QuotedPrintable.encode(text, into: &out)
            case .leaf(_, .base64(let text), _):
                out.writeString(Base64Lines.encode(Array(text.utf8)))
            case .multipart(let subtype, let parts):
                let boundary = Self.boundary(subtype, parts.count)
                out.writeStaticString("This is a multi-part message in MIME format.\r\n")
                for part in parts {
                    out.writeStaticString("\r\n--"); out.writeString(boundary); out.writeStaticString("\r\n")
                    part.writeHeaders(into: &out)
                    out.writeStaticString("\r\n")
                    part.writeContent(into: &out)
                }
                out.writeStaticString("\r\n--"); out.writeString(boundary); out.writeStaticString("--")
            }
        }

        /// "=_" cannot occur in quoted-printable or base64 output, so boundaries never collide with content.
        static func boundary(_ subtype: String, _ count: Int) -> String { "=_\(subtype)_\(count)_" + token }
        private static let token = (0..<24).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }.reduce("") { $0 + String($1) }
    }

    /// Every email of one second shares its Date header; formatting it (Calendar + String(format:))
    /// once per second instead of once per email.
    private static let lastDate = NIOLockedValueBox<(second: Int64, text: String)>((Int64.min, ""))

    static func rfc5322Date(_ date: Date) -> String {
        let second = Int64(date.timeIntervalSince1970.rounded(.down))
        if let cached = lastDate.withLockedValue({ $0.second == second ? $0.text : nil }) { return cached }
        var calendar = Foundation.Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: Date(timeIntervalSince1970: TimeInterval(second)))
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let text = String(format: "%@, %02d %@ %04d %02d:%02d:%02d +0000", days[c.weekday! - 1], c.day!, months[c.month! - 1], c.year!, c.hour!, c.minute!, c.second!)
        lastDate.withLockedValue { $0 = (second, text) }
        return text
    }

    static func isValidHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { (33...126).contains($0) && $0 != 58 }
    }

    static func safeFilename(_ name: String) -> String {
        let cleaned = name.unicodeScalars.filter { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
        return cleaned.isEmpty ? "invite.ics" : String(String.UnicodeScalarView(cleaned))
    }
}
