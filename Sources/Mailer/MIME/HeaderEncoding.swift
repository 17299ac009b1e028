import Foundation
import NIOConcurrencyHelpers

/// RFC 5322 header rendering with RFC 2047 encoded-words for anything that is not plain ASCII.
enum HeaderEncoding {
    static let maxLine = 76
    private static let lastEncoded = NIOLockedValueBox<(name: String, value: String, field: String)>(("", "", ""))
    private static let wordOverhead = "=?UTF-8?B??=".count

    /// Removes CR, LF and other controls so a user-supplied value can never inject a header.
    static func sanitize(_ value: String) -> String {
        // Most values have no control character: returned as they are (one pass over the bytes, no copy).
        guard value.utf8.contains(where: { $0 < 32 || $0 == 127 }) else { return value }
        return String(String.UnicodeScalarView(value.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? " " : $0 }))
    }

    static func needsEncoding(_ value: String) -> Bool {
        // One pass over the bytes: non-ASCII, "=?" (would read as an encoded-word) or a word too long to fold.
        var previous: UInt8 = 0
        var word = 0
        for b in value.utf8 {
            if b > 126 || (previous == 61 && b == 63) { return true }
            word = b == 32 ? 0 : word + 1
            if word > maxLine - 10 { return true }
            previous = b
        }
        return false
    }

    /// A complete unstructured header field (`Name: value`), folded with CRLF SP, lines ≤ 76 octets.
    static func field(_ name: String, _ value: String) -> String {
        let clean = sanitize(value)
        if needsEncoding(clean) {
            // A fan-out encodes the same subject for every recipient: the last one is kept.
            if let hit = lastEncoded.withLockedValue({ $0.name == name && $0.value == clean ? $0.field : nil }) { return hit }
            let field = name + ": " + encodedWords(clean, firstLineUsed: name.count + 2).joined(separator: "\r\n ")
            lastEncoded.withLockedValue { $0 = (name, clean, field) }
            return field
        }
        // Short ASCII values fit on the first line as they are.
        if name.utf8.count + 2 + clean.utf8.count <= maxLine { return name + ": " + clean }
        return name + ": " + foldASCII(clean, firstLineUsed: name.count + 2)
    }

    /// Splits text into `=?UTF-8?B?…?=` words, each ≤ 75 characters, never splitting a character
    /// (grapheme clusters such as 🏋️ stay whole), the first sized to fit after the header name.
    static func encodedWords(_ text: String, firstLineUsed: Int) -> [String] {
        var words: [String] = []
        var current: [UInt8] = []
        func capacity() -> Int {
            let lineRoom = words.isEmpty ? maxLine - firstLineUsed : maxLine - 1
            let base64Chars = min(lineRoom, 75) - wordOverhead
            return max(base64Chars / 4 * 3, 3)
        }
        func flush() {
            guard !current.isEmpty else { return }
            words.append("=?UTF-8?B?" + Data(current).base64EncodedString() + "?=")
            current.removeAll()
        }
        for character in text {
            let bytes = Array(String(character).utf8)
            if current.count + bytes.count > capacity() { flush() }
            current += bytes
        }
        flush()
        return words.isEmpty ? ["=?UTF-8?B??="] : words
    }

    /// Folds printable ASCII at spaces so lines stay ≤ 76 where possible.
    static func foldASCII(_ text: String, firstLineUsed: Int) -> String {
        var out = ""
        var lineLength = firstLineUsed
        for (i, word) in text.split(separator: " ", omittingEmptySubsequences: false).enumerated() {
            if i == 0 {
                out += word
                lineLength += word.count
            } else if lineLength + 1 + word.count > maxLine {
                out += "\r\n " + word
                lineLength = 1 + word.count
            } else {
                out += " " + word
                lineLength += 1 + word.count
            }
        }
        return out
    }
}

/// A mailbox: optional display name and an address.
public struct MailAddress: Sendable, Equatable {
    public var name: String?
    public var address: String

    public init(_ address: String, name: String? = nil) {
        self.address = address
        self.name = name
    }

    /// Parses `Name <addr@x>` or a bare `addr@x` (EMAIL_FROM's forms).
    public init?(parsing raw: String) {
        let s = raw.trimmingCharacters(in: .whitespaces)
        if let open = s.lastIndex(of: "<"), s.hasSuffix(">") {
            var name = s[..<open].trimmingCharacters(in: .whitespaces)
            if name.hasPrefix("\""), name.hasSuffix("\""), name.count >= 2 { name = String(name.dropFirst().dropLast()) }
            self.init(String(s[s.index(after: open)..<s.index(before: s.endIndex)]), name: name.isEmpty ? nil : name)
        } else {
            self.init(s)
        }
        guard Self.isValid(address) else { return nil }
    }

    /// The one address rule, at import and at send time: an RFC 5321 `Mailbox` in dot-atom form,
    /// ASCII only (the SMTP client does not negotiate SMTPUTF8, so an internationalised local part
    /// could not be sent; an internationalised domain is accepted in its `xn--` form). Local part
    /// ≤ 64 octets of atext separated by single dots; domain ≤ 253 octets, two or more LDH labels
    /// of 1–63 octets; the whole ≤ 254. Quoted local parts, comments, brackets, address literals
    /// and anything that would put a second address in a header are refused.
    public static func isValid(_ address: String) -> Bool {
        let bytes = Array(address.utf8)
        guard bytes.count <= 254, let at = bytes.lastIndex(of: UInt8(ascii: "@")) else { return false }
        let local = bytes[..<at], domain = bytes[(at + 1)...]
        guard !local.isEmpty, local.count <= 64, isDotAtom(local) else { return false }
        guard !domain.isEmpty, domain.count <= 253 else { return false }
        let labels = domain.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.first != UInt8(ascii: "-") && label.last != UInt8(ascii: "-")
                && label.allSatisfy { isAlphaNumeric($0) || $0 == UInt8(ascii: "-") }
        } && !labels.last!.allSatisfy { $0 >= 48 && $0 <= 57 } // not a bare IP address
    }

    private static let atextSpecials = Set("!#$%&'*+-/=?^_`{|}~".utf8)
    private static func isAlphaNumeric(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
    private static func isDotAtom(_ s: ArraySlice<UInt8>) -> Bool {
        s.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).allSatisfy { atom in
            !atom.isEmpty && atom.allSatisfy { isAlphaNumeric($0) || atextSpecials.contains($0) }
        }
    }

    /// RFC 5322 specials that make a display name a quoted-string.
    private static let specials = Set("()<>[]:;@\\,.\"".utf8)

    /// The header form, encoding or quoting the display name as needed.
    func rendered(lineUsed: Int) -> String {
        // Sanitized, a name is blank when it has nothing but spaces (controls became spaces).
        guard let rawName = name.map(HeaderEncoding.sanitize), rawName.utf8.contains(where: { $0 != 32 }),
              rawName.utf8.allSatisfy({ $0 < 128 }) || !rawName.trimmingCharacters(in: .whitespaces).isEmpty else {
            return "<\(address)>"
        }
        let angle = "<\(address)>"
        if HeaderEncoding.needsEncoding(rawName) {
            let words = HeaderEncoding.encodedWords(rawName, firstLineUsed: lineUsed)
            return words.joined(separator: "\r\n ") + "\r\n " + angle
        }
        // Printable ASCII from here (needsEncoding refused anything else): bytes are characters.
        let display = rawName.utf8.contains(where: { Self.specials.contains($0) })
            ? "\"" + rawName.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            : rawName
        let oneLine = display + " " + angle
        return lineUsed + oneLine.utf8.count <= HeaderEncoding.maxLine ? oneLine : display + "\r\n " + angle
    }
}
