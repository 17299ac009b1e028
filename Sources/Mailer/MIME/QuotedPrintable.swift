/// RFC 2045 quoted-printable for UTF-8 text: hard line breaks become CRLF, soft breaks keep every
/// line ≤ 76 characters, an escape is never split, trailing whitespace is encoded.
enum QuotedPrintable {
    static func encode(_ text: String) -> String {
        var out = ""
        let lines = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
        for (index, line) in lines.enumerated() {
            if index > 0 { out += "\r\n" }
            out += encodeLine(Array(line.utf8))
        }
        return out
    }

    private static let hex = Array("0123456789ABCDEF")

    private static func encodeLine(_ bytes: [UInt8]) -> String {
        var out = ""
        var lineLength = 0
        for (i, b) in bytes.enumerated() {
            let isLast = i == bytes.count - 1
            let token: String
            if (b == 32 || b == 9) && isLast {
                token = "=" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
            } else if (33...126).contains(b) && b != 61 || b == 32 || b == 9 {
                token = String(UnicodeScalar(b))
            } else {
                token = "=" + String(hex[Int(b >> 4)]) + String(hex[Int(b & 15)])
            }
            // Leave room for the soft break "=" unless this token ends the line.
            let limit = isLast ? 76 : 75
            if lineLength + token.count > limit {
                out += "=\r\n"
                lineLength = 0
            }
            out += token
            lineLength += token.count
        }
        return out
    }
}

enum Base64Lines {
    /// Base64 in lines of 76 characters, CRLF-separated.
    static func encode(_ bytes: [UInt8]) -> String {
        let full = Data(bytes).base64EncodedString()
        var lines: [Substring] = []
        var index = full.startIndex
        while index < full.endIndex {
            let end = full.index(index, offsetBy: 76, limitedBy: full.endIndex) ?? full.endIndex
            lines.append(full[index..<end])
            index = end
        }
        return lines.joined(separator: "\r\n")
    }
}

import Foundation
