import Foundation
import NIOCore
import Testing
@testable import Mailer

@Suite struct HeaderEncodingTests {
    static let subjects = [
        "🔴 Casey Coach is LIVE NOW!",
        "📅 Zoë Ångström-Nuñez scheduled a live stream",
        "⏰ Björk goes live in 15 minutes! 🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️🏋️ 🕐 📺",
        "Plain ASCII subject that is long enough to need folding somewhere around the seventy-six column limit ok",
        "Looks like an encoded word =?UTF-8?B?SGk=?= but is not",
        String(repeating: "é", count: 300),
    ]

    @Test(arguments: subjects)
    func encodedHeadersStayWithinLimitsAndNeverSplitACharacter(subject: String) throws {
        let field = HeaderEncoding.field("Subject", subject)
        let lines = field.components(separatedBy: "\r\n")
        for (i, line) in lines.enumerated() {
            #expect(line.utf8.count <= 76, "line \(i) is \(line.utf8.count) octets: \(line)")
            if i > 0 { #expect(line.hasPrefix(" ")) }
            #expect(line.unicodeScalars.allSatisfy { $0.isASCII })
        }
        // Each encoded word decodes on its own to valid UTF-8 made of whole characters.
        let words = field.dropFirst("Subject: ".count).components(separatedBy: "\r\n ")
        var decoded = ""
        for word in words where word.hasPrefix("=?") {
            #expect(word.count <= 75)
            let payload = word.dropFirst("=?UTF-8?B?".count).dropLast(2)
            let bytes = try #require(Data(base64Encoded: String(payload)))
            let text = try #require(String(data: bytes, encoding: .utf8))
            decoded += text
        }
        if words.first?.hasPrefix("=?") == true { #expect(decoded == subject) }
    }

    @Test func headerInjectionIsImpossible() {
        let message = MailMessage(from: MailAddress("live@example.com", name: "Live\r\nBcc: victim@example.com"),
                                  to: [MailAddress("a@example.com", name: "A")],
                                  subject: "Hi\r\nBcc: victim@example.com\nX-Evil: 1", text: "body")
        let head = message.render().components(separatedBy: "\r\n\r\n")[0]
        #expect(!head.components(separatedBy: "\r\n").contains { $0.hasPrefix("Bcc:") || $0.hasPrefix("X-Evil:") })
    }

    @Test func displayNamesAreQuotedOrEncoded() {
        #expect(MailAddress("a@example.com", name: "Coach, Casey").rendered(lineUsed: 6) == "\"Coach, Casey\" <a@example.com>")
        #expect(MailAddress("a@example.com", name: "Casey \"CC\" Coach").rendered(lineUsed: 6) == "\"Casey \\\"CC\\\" Coach\" <a@example.com>")
        #expect(MailAddress("a@example.com").rendered(lineUsed: 6) == "<a@example.com>")
        #expect(MailAddress("a@example.com", name: "Zoë").rendered(lineUsed: 6).hasPrefix("=?UTF-8?B?"))
    }

    @Test func parsesEmailFrom() {
        #expect(MailAddress(parsing: "Live Streams <live@example.com>") == MailAddress("live@example.com", name: "Live Streams"))
        #expect(MailAddress(parsing: "\"Fit, Inc\" <live@example.com>") == MailAddress("live@example.com", name: "Fit, Inc"))
        #expect(MailAddress(parsing: "live@example.com") == MailAddress("live@example.com"))
        #expect(MailAddress(parsing: "not an address") == nil)
        #expect(MailAddress(parsing: "x <a@b>\r\nBcc: c@d") == nil)
    }
}

@Suite struct BodyEncodingTests {
    @Test func quotedPrintableLinesAndEscapes() {
        let text = "Hi Zoë,\n" + String(repeating: "x", count: 10_000) + "\n.dot first\ntrailing space \n= sign 🔴\r\nend"
        let qp = QuotedPrintable.encode(text)
        for line in qp.components(separatedBy: "\r\n") {
            #expect(line.utf8.count <= 76)
            #expect(line.unicodeScalars.allSatisfy { $0.isASCII })
            #expect(!line.hasSuffix(" ") && !line.hasSuffix("\t"))
        }
        #expect(!qp.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        #expect(qp.contains("=3D sign =F0=9F=94=B4"))
        #expect(qp.contains("trailing space=20"))
    }

    /// The encoder writes into the string's storage with a fast path for short literal lines; it must
    /// agree byte for byte with this plain RFC 2045 reference (one byte at a time) on random text with
    /// long lines, escapes at the fold, trailing blanks, CR/LF mixes and multi-byte characters.
    @Test func quotedPrintableMatchesAByteByByteReference() {
        func reference(_ text: String) -> String {
            func line(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
                var out: [UInt8] = [], length = 0
                let hex = Array("0123456789ABCDEF".utf8)
                for (k, b) in bytes.enumerated() {
                    let isLast = k == bytes.count - 1
                    let literal = ((33...126).contains(b) && b != 61) || ((b == 32 || b == 9) && !isLast)
                    let width = literal ? 1 : 3
                    if length + width > (isLast ? 76 : 75) { out += [61, 13, 10]; length = 0 }
                    out += literal ? [b] : [61, hex[Int(b >> 4)], hex[Int(b & 15)]]
                    length += width
                }
                return out
            }
            let unified = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            let lines = unified.split(separator: "\n", omittingEmptySubsequences: false).map { line(ArraySlice(Array($0.utf8))) }
            return String(decoding: Array(lines.joined(separator: [13, 10])), as: UTF8.self)
        }
        var generator = SystemRandomNumberGenerator()
        let alphabet = ["a", "Z", " ", "\t", "=", "é", "🔴", "\r\n", "\n", "\r", ".", String(repeating: "x", count: 70), "~"]
        var cases = ["", " ", "=", "\n", String(repeating: "y", count: 76), String(repeating: "y", count: 77), String(repeating: "y", count: 75) + " ",
                     String(repeating: "y", count: 74) + "=", String(repeating: "é", count: 40)]
        for _ in 0..<3_000 {
            cases.append((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined())
        }
        for text in cases { #expect(QuotedPrintable.encode(text) == reference(text), "\(Array(text.utf8))") }
    }

    @Test func dotStuffingAndLineEndings() {
        var buffer = DotStuffing.encode("a\r\n.b\n..c\rd\r\n")
        #expect(buffer.readString(length: buffer.readableBytes) == "a\r\n..b\r\n...c\r\nd\r\n.\r\n")
    }

    /// The transparent fast path (CRLF already, no leading dots) and the normalizing path agree with
    /// a line-by-line reference on random mixes of CR, LF, dots and text, including the edge bytes.
    @Test func dotStuffingMatchesALineByLineReference() {
        func reference(_ s: String) -> String {
            let unified = s.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            var lines = unified.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            return lines.map { ($0.hasPrefix(".") ? "." : "") + $0 + "\r\n" }.joined() + ".\r\n"
        }
        var generator = SystemRandomNumberGenerator()
        let alphabet = ["a", "é", ".", "\r\n", "\r", "\n", " ", "x.y"]
        var cases = ["", ".", "\r\n", "a", "a\r\n", ".a\r\n", "a\r\n.", "a\r", "a\n", "\r\n.\r\n"]
        for _ in 0..<2_000 {
            cases.append((0..<Int.random(in: 0...12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }.joined())
        }
        for text in cases {
            var buffer = DotStuffing.encode(text)
            #expect(buffer.readString(length: buffer.readableBytes) == reference(text), "\(Array(text.utf8))")
            var fromBytes = DotStuffing.encode(ByteBuffer(string: text)) // a rendered buffer: the same bytes
            #expect(fromBytes.readString(length: fromBytes.readableBytes) == reference(text), "\(Array(text.utf8))")
        }
    }

    @Test func renderedMessageStructure() throws {
        let message = MailMessage(
            from: MailAddress("live@fit.example.com", name: "Fit Live"), to: [MailAddress("m@example.com", name: "Mia Müller")],
            subject: "📅 Test", text: "plain", html: "<p>html</p>",
            calendar: .init(method: .publish, ics: "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),
            headers: MailMessage.Header.listUnsubscribe("https://api.example.com/api/unsubscribe/" + String(repeating: "Ab9_-", count: 30)),
            messageID: "fixed@fit.example.com", date: Date(timeIntervalSince1970: 1_772_964_000))
        let raw = message.render()
        #expect(!raw.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        // One-click unsubscribe URLs stay whole on one line (never encoded-words, never folded inside the URL).
        let unsubscribe = "List-Unsubscribe: <https://api.example.com/api/unsubscribe/" + String(repeating: "Ab9_-", count: 30) + ">"
        #expect(raw.contains("\r\n" + unsubscribe + "\r\n"))
        for line in raw.components(separatedBy: "\r\n") where line != unsubscribe { #expect(line.utf8.count <= 76, "\(line)") }
        #expect(raw.contains("Date: Sun, 08 Mar 2026 10:00:00 +0000\r\n"))
        #expect(raw.contains("Message-ID: <fixed@fit.example.com>\r\n"))
        #expect(raw.contains("MIME-Version: 1.0\r\n"))
        #expect(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"))
        let plain = try #require(raw.range(of: "text/plain"))
        let html = try #require(raw.range(of: "text/html"))
        let ics = try #require(raw.range(of: "text/calendar; charset=utf-8; method=PUBLISH"))
        #expect(plain.lowerBound < html.lowerBound && html.lowerBound < ics.lowerBound)
        #expect(raw.contains("multipart/mixed") && raw.contains("multipart/alternative"))
    }

    @Test func htmlEscaping() {
        #expect(HTML.escape(#"<script>alert("x")</script> & 'y'"#) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;")
    }
}

@Suite struct ConfigurationTests {
    @Test func providersFillHostPortAndUser() throws {
        let sendgrid = try #require(try SMTPConfiguration.fromEnvironment(["EMAIL_PROVIDER": "sendgrid", "EMAIL_SERVICE_API_KEY": "SG.key"]))
        #expect(sendgrid.host == "smtp.sendgrid.net" && sendgrid.port == 587 && sendgrid.security == .starttls)
        #expect(sendgrid.username == "apikey" && sendgrid.password == "SG.key")
        let resend = try #require(try SMTPConfiguration.fromEnvironment(["EMAIL_PROVIDER": "resend", "SMTP_PASSWORD": "re_x"]))
        #expect(resend.host == "smtp.resend.com" && resend.username == "resend" && resend.password == "re_x")
        let postmark = try #require(try SMTPConfiguration.fromEnvironment(["EMAIL_PROVIDER": "postmark", "EMAIL_SERVICE_API_KEY": "tok"]))
        #expect(postmark.username == "tok" && postmark.password == "tok")
    }

    @Test func explicitSettingsAndDefaults() throws {
        #expect(try SMTPConfiguration.fromEnvironment([:]) == nil)
        let c = try #require(try SMTPConfiguration.fromEnvironment(["SMTP_HOST": "10.0.0.5", "SMTP_PORT": "465", "SMTP_CA_FILE": "/ca.pem"]))
        #expect(c.security == .tls && c.caFile == "/ca.pem" && c.username == nil)
        #expect(try SMTPConfiguration.fromEnvironment(["SMTP_HOST": "relay", "SMTP_PORT": "25"])?.security == SMTPConfiguration.Security.none)
        #expect(throws: SMTPConfiguration.Error.self) { try SMTPConfiguration.fromEnvironment(["SMTP_HOST": "x", "SMTP_SECURITY": "ssl"]) }
        #expect(throws: SMTPConfiguration.Error.self) { try SMTPConfiguration.fromEnvironment(["EMAIL_PROVIDER": "mailgun"]) }
        let from = try SMTPConfiguration.fromEnvironment(["SMTP_HOST": "relay", "EMAIL_FROM": "Fit Live <live@fit.example.com>"])?.from
        #expect(from == MailAddress("live@fit.example.com", name: "Fit Live"))
        #expect(throws: SMTPConfiguration.Error.self) { try SMTPConfiguration.fromEnvironment(["SMTP_HOST": "relay", "EMAIL_FROM": "nobody"]) }
    }
}
