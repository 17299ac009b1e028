import CZlib

/// RFC 1950 zlib streams through the system libz: one-shot at the default level gives the exact
/// bytes of CPython's `zlib.compress`, which the published token vectors were made with.
enum Zlib {
    static func compress(_ input: [UInt8]) throws -> [UInt8] {
        var size = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let rc = out.withUnsafeMutableBufferPointer { o in
            input.withUnsafeBufferPointer { i in
                compress2(o.baseAddress, &size, i.baseAddress, uLong(input.count), Z_DEFAULT_COMPRESSION)
            }
        }
        guard rc == Z_OK else { throw AccessToken2.Error.inflateFailed }
        return Array(out.prefix(Int(size)))
    }

    /// Inflates with a hard output cap so a hostile token cannot make us allocate unbounded memory.
    static func decompress(_ input: [UInt8], maxOutput: Int = 64 * 1024) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw AccessToken2.Error.inflateFailed
        }
        defer { inflateEnd(&stream) }
        var out = [UInt8](repeating: 0, count: maxOutput)
        var input = input
        let rc: Int32 = input.withUnsafeMutableBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                stream.next_in = i.baseAddress
                stream.avail_in = uInt(i.count)
                stream.next_out = o.baseAddress
                stream.avail_out = uInt(o.count)
                return inflate(&stream, Z_FINISH)
            }
        }
        guard rc == Z_STREAM_END else { throw AccessToken2.Error.inflateFailed }
        return Array(out.prefix(Int(stream.total_out)))
    }
}
