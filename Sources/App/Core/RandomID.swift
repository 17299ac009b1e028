import Foundation

/// Random identifiers for hot paths. Foundation's `UUID()` on Linux opens, reads and closes
/// `/dev/urandom` for every call (three system calls and a file descriptor: it was one `openat` per
/// email in the fan-out); these take their bytes from the standard library's system generator
/// (`getrandom(2)` on Linux, 8 bytes per call, no file).
enum RandomID {
    /// A version-4 (random) UUID, as `UUID()` makes.
    static func uuid() -> UUID {
        var raw: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &raw) { fill($0) }
        raw.6 = (raw.6 & 0x0F) | 0x40 // version 4
        raw.8 = (raw.8 & 0x3F) | 0x80 // RFC 4122 variant
        return UUID(uuid: raw)
    }

    /// `count` random bytes as lower-case hex (2 × count characters).
    static func hex(bytes count: Int) -> String {
        var raw = [UInt8](repeating: 0, count: count)
        raw.withUnsafeMutableBytes { fill($0) }
        return Hex.lower(raw)
    }

    static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        var generator = SystemRandomNumberGenerator()
        var i = 0
        while i < buffer.count {
            withUnsafeBytes(of: generator.next() as UInt64) { word in
                for k in 0..<min(8, buffer.count - i) { buffer[i + k] = word[k] }
            }
            i += 8
        }
    }
}
