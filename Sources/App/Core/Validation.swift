import Foundation
import Mailer

/// Input rules shared by every endpoint.
enum Validation {
    /// Host-platform ids: 1–128 of [A-Za-z0-9._:@-] (cuid, UUID, numeric and prefixed ids fit).
    static func isValidUserID(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128 && s.utf8.allSatisfy { c in
            (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c) || [46, 95, 58, 64, 45].contains(c)
        }
    }

    static func isValidTimeZone(_ s: String) -> Bool {
        s.utf8.count <= 64 && TimeZone(identifier: s) != nil
    }

    /// The mailer's own rule (`MailAddress.isValid`): what is accepted here can be sent.
    static func isValidEmail(_ s: String) -> Bool { MailAddress.isValid(s) }

    static func isHTTPSURL(_ s: String, maxLength: Int = 2048) -> Bool {
        guard s.utf8.count <= maxLength, let url = URL(string: s), url.scheme?.lowercased() == "https",
              let host = url.host, !host.isEmpty else { return false }
        return true
    }

    enum Lines { case single, multi }

    /// A free-text field: trimmed; at most `max` characters *and* 4 × `max` UTF-8 bytes (a
    /// character can hide any number of combining marks); no control characters; single-line
    /// fields (titles, names, types) also refuse CR, LF, tab, Unicode line/paragraph separators
    /// and bidirectional overrides (they reach email headers and calendar lines). Multi-line
    /// text keeps LF and tab (CRLF becomes LF).
    static func text(_ value: String?, field: String, min: Int = 0, max: Int, lines: Lines = .single) throws -> String? {
        guard let value else {
            if min > 0 { throw APIError.validation("\(field) is required") }
            return nil
        }
        guard value.utf8.count <= max * 4 + 1024 else { throw APIError.validation("\(field) must be at most \(max) characters (\(max * 4) bytes)") }
        var trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        if lines == .multi { trimmed = trimmed.replacingOccurrences(of: "\r\n", with: "\n") }
        guard trimmed.utf8.count <= max * 4 else { throw APIError.validation("\(field) must be at most \(max) characters (\(max * 4) bytes)") }
        guard trimmed.count >= min, trimmed.count <= max else {
            throw APIError.validation(min > 0 ? "\(field) must be \(min)–\(max) characters" : "\(field) must be at most \(max) characters")
        }
        if let bad = trimmed.unicodeScalars.first(where: { !allowed($0, lines) }) {
            let what = bad == "\n" || bad == "\r" || bad == "\u{2028}" || bad == "\u{2029}" ? "line breaks" : "control characters"
            throw APIError.validation("\(field) must not contain \(what)")
        }
        return trimmed.isEmpty && min == 0 ? nil : trimmed
    }

    private static func allowed(_ c: Unicode.Scalar, _ lines: Lines) -> Bool {
        switch c.value {
        case 0x0A, 0x09: lines == .multi
        case 0x00...0x1F, 0x7F...0x9F: false              // C0, DEL, C1 (incl. NEL)
        case 0x2028, 0x2029: false                         // line / paragraph separator
        case 0x202A...0x202E, 0x2066...0x2069: lines == .multi // bidi embeddings, overrides, isolates
        case 0xFEFF: false                                 // BOM / zero-width no-break space
        default: true
        }
    }
}
