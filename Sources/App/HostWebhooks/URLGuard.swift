import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The SSRF guard for webhook URLs: https only, and every address the host resolves to must be
/// public — not loopback, link-local (cloud metadata 169.254.169.254), private (RFC 1918, fc00::/7),
/// CGNAT, multicast, unspecified or reserved. Checked when an endpoint is saved and again before
/// every send, after DNS (a name can start pointing inward). Redirects are never followed.
enum URLGuard {
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case invalid(String), blocked(String), unresolvable(String)
        var description: String {
            switch self {
            case .invalid(let why): why
            case .blocked(let address): "the URL resolves to a non-public address (\(address))"
            case .unresolvable(let host): "the host \(host) does not resolve"
            }
        }
    }

    /// Syntax: an absolute http(s) URL without credentials, at most 2048 bytes.
    static func parse(_ raw: String, allowHTTP: Bool) throws -> URLComponents {
        guard raw.utf8.count <= 2048, !raw.contains(where: { $0.isWhitespace }), let c = URLComponents(string: raw),
              let scheme = c.scheme?.lowercased(), let host = c.host, !host.isEmpty else { throw Refusal.invalid("url must be an absolute URL") }
        guard scheme == "https" || (allowHTTP && scheme == "http") else {
            throw Refusal.invalid(allowHTTP ? "url must be http(s)" : "url must be https")
        }
        guard c.user == nil, c.password == nil else { throw Refusal.invalid("url must not carry credentials") }
        return c
    }

    /// Resolves `host` and refuses any non-public address.
    static func checkResolved(host: String) throws {
        let addresses = try resolve(host)
        guard !addresses.isEmpty else { throw Refusal.unresolvable(host) }
        for address in addresses where !isPublic(address) { throw Refusal.blocked(address) }
    }

    static func resolve(_ host: String) throws -> [String] {
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { throw Refusal.unresolvable(host) }
        defer { freeaddrinfo(first) }
        var out: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                out.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            cursor = info.pointee.ai_next
        }
        return out
    }

    /// Public unicast only.
    static func isPublic(_ address: String) -> Bool {
        let plain = address.split(separator: "%").first.map(String.init) ?? address
        // IPv4 compares as IPv4-mapped IPv6 (CIDR), so ::ffff:10.0.0.1 is judged as 10.0.0.1.
        guard CIDR.bytes(plain) != nil else { return false }
        return !blocked.contains { $0.contains(plain) }
    }

    static let blocked = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
        "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
    ].compactMap(CIDR.init)
}
