import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// RFC 2045 quoted-printable for UTF-8 text: hard line breaks become CRLF, soft breaks keep every
/// line ≤ 76 characters, an escape is never split, trailing whitespace is encoded.
enum QuotedPrintable {
    /// Written straight into the result's storage (this runs twice for every email): at most
    /// 3 output bytes per input byte, plus a 3-byte soft break per ≥ 25 input bytes and CRLF for
    /// each 1–2 byte hard break, so 4 × input + 16 always fits.
    static func encode(_ text: String) -> String {
        var copy = text
        return copy.withUTF8 { bytes in
            String(unsafeUninitializedCapacity: bytes.count * 4 + 16) { out in encode(bytes, into: out.baseAddress!) }
        }
    }

    /// Appends the encoding of `text` to `buffer`.
    static func encode(_ text: String, into buffer: inout ByteBuffer) {
        var copy = text
        copy.withUTF8 { bytes in
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count * 4 + 16) { out in
                encode(bytes, into: out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// Encodes `bytes` at `out`; returns the number of bytes written. Line breaks are found with
    /// `memchr` (a vectorized scan), not by testing every byte.
    private static func encode(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        let count = bytes.count
        var o = 0
        var lineStart = 0
        var nextLF = -1 // where the next line feed at or after `lineStart` is (`count`: none); searched again only once passed
        while true {
            if nextLF < lineStart {
                nextLF = count
                if lineStart < count, let lf = memchr(base + lineStart, 10, count - lineStart) {
                    nextLF = lineStart + (UnsafeRawPointer(lf) - UnsafeRawPointer(base + lineStart))
                }
            }
            var end = nextLF
            if end > lineStart, let cr = memchr(base + lineStart, 13, end - lineStart) {
                end = lineStart + (UnsafeRawPointer(cr) - UnsafeRawPointer(base + lineStart))
            }
            if lineStart > 0 { out[o] = 13; out[o + 1] = 10; o += 2 } // every line but the first starts after a break
            o += encodeLine(UnsafeBufferPointer(start: base + lineStart, count: end - lineStart), into: out + o)
            if end == count { return o }
            // CRLF, a lone CR or a lone LF: one hard break.
            lineStart = base[end] == 13 && end + 1 < count && base[end + 1] == 10 ? end + 2 : end + 1
        }
    }

    private static let hex: [UInt8] = Array("0123456789ABCDEF".utf8)

    /// 1: printable ASCII other than "=" (always literal); 2: space or tab (literal unless last on the line); 0: escaped.
    private static let classes: [UInt8] = (0..<256).map { b in
        b == 32 || b == 9 ? 2 : ((33...126).contains(b) && b != 61 ? 1 : 0)
    }

    private static func encodeLine(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Int {
        let n = bytes.count
        guard n > 0, let base = bytes.baseAddress else { return 0 }
        return classes.withUnsafeBufferPointer { classes in
            // A short line of literals with no trailing space or tab is copied as it is.
            if n <= 76, classes[Int(base[n - 1])] == 1 {
                var plain = true
                for k in 0..<n where classes[Int(base[k])] == 0 { plain = false; break }
                if plain { out.update(from: base, count: n); return n }
            }
            return hex.withUnsafeBufferPointer { hex in
                var o = 0
                var lineLength = 0
                var k = 0
                while k < n {
                    let b = base[k]
                    let isLast = k == n - 1
                    let cls = classes[Int(b)]
                    if cls != 0, !isLast {
                        // A run of literals (printable, space, tab; not the line's last byte) is copied in pieces that
                        // fill each encoded line up to its soft break — the same bytes as one at a time.
                        var end = k + 1
                        while end < n - 1, classes[Int(base[end])] != 0 { end += 1 }
                        while k < end {
                            if lineLength >= 75 {
                                out[o] = 61; out[o + 1] = 13; out[o + 2] = 10; o += 3
                                lineLength = 0
                            }
                            let take = min(end - k, 75 - lineLength)
                            (out + o).update(from: base + k, count: take)
                            o += take; k += take; lineLength += take
                        }
                        continue
                    }
                    let literal = cls == 1 || (cls == 2 && !isLast)
                    let width = literal ? 1 : 3
                    // Leave room for the soft break "=" unless this token ends the line.
                    if lineLength + width > (isLast ? 76 : 75) {
                        out[o] = 61; out[o + 1] = 13; out[o + 2] = 10; o += 3
                        lineLength = 0
                    }
                    if literal {
                        out[o] = b; o += 1
                    } else {
                        out[o] = 61; out[o + 1] = hex[Int(b >> 4)]; out[o + 2] = hex[Int(b & 15)]; o += 3
                    }
                    lineLength += width
                    k += 1
                }
                return o
            }
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
