/// Lower-case hex of bytes (signatures, digests, etags), without a formatted string per byte.
enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    static func lower<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
