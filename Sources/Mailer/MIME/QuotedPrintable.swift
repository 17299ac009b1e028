/// RFC 2045 quoted-printable for UTF-8 text: hard line breaks become CRLF, soft breaks keep every
/// line ≤ 76 characters, an escape is never split, trailing whitespace is encoded.
enum QuotedPrintable {
    static func encode(_ text: String) -> String {
        var out: [UInt8] = []
        var copy = text
        copy.withUTF8 { bytes in
            out.reserveCapacity(bytes.count + bytes.count / 8 + 16)
            var lineStart = 0
            var i = 0
            var first = true
            func flush(_ end: Int) {
                if !first { out.append(13); out.append(10) }
                first = false
                encodeLine(UnsafeBufferPointer(rebasing: bytes[lineStart..<end]), into: &out)
            }
            while i < bytes.count {
                let b = bytes[i]
                if b == 13 || b == 10 {
                    flush(i)
                    if b == 13, i + 1 < bytes.count, bytes[i + 1] == 10 { i += 1 }
                    lineStart = i + 1
                }
                i += 1
            }
            flush(bytes.count)
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    private static func encodeLine(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var lineLength = 0
        for (i, b) in bytes.enumerated() {
            let isLast = i == bytes.count - 1
            let literal = ((33...126).contains(b) && b != 61) || ((b == 32 || b == 9) && !isLast)
            let width = literal ? 1 : 3
            // Leave room for the soft break "=" unless this token ends the line.
            if lineLength + width > (isLast ? 76 : 75) {
                out.append(61); out.append(13); out.append(10)
                lineLength = 0
            }
            if literal {
                out.append(b)
            } else {
                out.append(61); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
            }
            lineLength += width
        }
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
