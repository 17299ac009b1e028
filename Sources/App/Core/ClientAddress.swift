import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Vapor

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `fd00::/8`, or one address). Addresses are compared as
/// 16 bytes (IPv4 as IPv4-mapped IPv6), so `::ffff:10.1.2.3` and `10.1.2.3` are the same peer.
struct CIDR: Sendable, Equatable, CustomStringConvertible {
    let network: [UInt8]
    let prefix: Int
    let description: String

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let address = CIDR.bytes(String(first)) else { return nil }
        let isV4 = !first.contains(":")
        var bits = 128
        if parts.count == 2 {
            guard let n = Int(parts[1]), parts[1].allSatisfy(\.isASCII), n >= 0, n <= (isV4 ? 32 : 128) else { return nil }
            bits = isV4 ? 96 + n : n
        }
        prefix = bits
        network = CIDR.masked(address, bits)
        description = text
    }

    func contains(_ address: String) -> Bool {
        guard let bytes = CIDR.bytes(address) else { return false }
        return CIDR.masked(bytes, prefix) == network
    }

    /// Named sets an operator can write instead of ranges: `private` = loopback, RFC 1918 and
    /// IPv6 unique-local addresses (what a platform's internal load balancer connects from).
    static func named(_ name: String) -> [CIDR]? {
        switch name.lowercased() {
        case "private": ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"].compactMap(CIDR.init)
        case "loopback": ["127.0.0.0/8", "::1/128"].compactMap(CIDR.init)
        default: nil
        }
    }

    /// 16 bytes for a literal IPv4 or IPv6 address (no host names, no zone ids).
    static func bytes(_ text: String) -> [UInt8]? {
        guard !text.isEmpty, text.utf8.count <= 45 else { return nil }
        if !text.contains(":") {
            var v4 = in_addr()
            guard inet_pton(AF_INET, text, &v4) == 1 else { return nil }
            return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        return withUnsafeBytes(of: &v6) { Array($0) }
    }

    private static func masked(_ bytes: [UInt8], _ bits: Int) -> [UInt8] {
        bytes.enumerated().map { i, b in
            let keep = max(0, min(8, bits - i * 8))
            return keep == 8 ? b : b & ~(UInt8(0xFF) >> keep)
        }
    }
}

/// Who is calling, for per-client limits: the peer address, unless the peer is a configured
/// proxy (TRUSTED_PROXIES) — then the rightmost X-Forwarded-For entry that is not itself a
/// trusted proxy. A client-supplied header from an untrusted peer is ignored.
enum ClientAddress {
    static func of(_ request: Request) -> String {
        let trusted = request.deps.config.trustedProxies
        return resolve(peer: request.remoteAddress?.ipAddress, forwardedFor: request.headers[.xForwardedFor], trusted: trusted)
    }

    static func resolve(peer: String?, forwardedFor: [String], trusted: [CIDR]) -> String {
        guard let peer else { return "unknown" }
        func isTrusted(_ ip: String) -> Bool { trusted.contains { $0.contains(ip) } }
        guard isTrusted(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            guard CIDR.bytes(hop) != nil else { return peer } // garbage in the chain: stop believing it
            if !isTrusted(hop) { return hop }
        }
        return peer
    }
}
