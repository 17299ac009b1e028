import Foundation

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

    /// Deliberately simple: one @, a dot in the domain, no spaces or control characters, ≤ 254.
    static func isValidEmail(_ s: String) -> Bool {
        guard s.utf8.count <= 254, !s.contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 32 || $0 == 127 } == true }) else { return false }
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64 else { return false }
        let domain = parts[1]
        return domain.contains(".") && !domain.hasPrefix(".") && !domain.hasSuffix(".") && !domain.contains("..")
    }

    static func isHTTPSURL(_ s: String, maxLength: Int = 2048) -> Bool {
        guard s.utf8.count <= maxLength, let url = URL(string: s), url.scheme?.lowercased() == "https",
              let host = url.host, !host.isEmpty else { return false }
        return true
    }

    /// Checks a free-text field's length in characters and forbids control characters other than newlines/tabs.
    static func text(_ value: String?, field: String, min: Int = 0, max: Int) throws -> String? {
        guard let value else {
            if min > 0 { throw APIError.validation("\(field) is required") }
            return nil
        }
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.count >= min, trimmed.count <= max else {
            throw APIError.validation(min > 0 ? "\(field) must be \(min)–\(max) characters" : "\(field) must be at most \(max) characters")
        }
        if trimmed.unicodeScalars.contains(where: { $0.value < 32 && $0 != "\n" && $0 != "\t" && $0 != "\r" || $0.value == 127 }) {
            throw APIError.validation("\(field) contains control characters")
        }
        return trimmed.isEmpty && min == 0 ? nil : trimmed
    }
}
