import Crypto
import Foundation

// AWS Signature Version 4 for S3: presigned URLs (query auth) and signed headers.
// No AWS SDK exists for Swift on this stack, so this is ours; the tests hold it byte-identical
// to AWS's published vector, to botocore on random inputs, and to a server that verifies it.

public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyId: String
    public var secretAccessKey: String
    /// Set for temporary (STS) credentials; it must then be signed into every request.
    public var sessionToken: String?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

public enum SigV4Error: Error, Equatable, Sendable {
    case invalidEndpoint(String)
    case invalidExpires(Int)  // S3 accepts 1...604800 seconds (7 days)
    case emptyBucketOrKey
    case invalidURL(String)
}

/// Where objects live: AWS virtual-hosted style (`https://{bucket}.s3.{region}.amazonaws.com/{key}`)
/// or path style on a custom S3-compatible endpoint (`{endpoint}/{bucket}/{key}`).
public struct S3Location: Sendable, Equatable {
    public enum Style: Sendable, Equatable { case virtualHosted, path }
    public let scheme: String
    public let host: String
    /// Only a non-default port is kept: it is part of the signed `host`, a default one is not.
    public let port: Int?
    public let region: String
    public let style: Style

    public static func aws(region: String) -> S3Location {
        S3Location(scheme: "https", host: "s3.\(region).amazonaws.com", port: nil, region: region, style: .virtualHosted)
    }

    /// `endpoint` is `http(s)://host[:port]` with no path, e.g. `http://127.0.0.1:4566`.
    public init(endpoint: String, region: String, style: Style = .path) throws {
        guard let c = URLComponents(string: endpoint), let scheme = c.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = c.host, !host.isEmpty, c.path.isEmpty || c.path == "/", c.query == nil, c.user == nil
        else { throw SigV4Error.invalidEndpoint(endpoint) }
        self.init(scheme: scheme, host: SigV4.bracketed(host.lowercased()), port: c.port.flatMap { SigV4.isDefault(port: $0, scheme: scheme) ? nil : $0 },
                  region: region, style: style)
    }

    private init(scheme: String, host: String, port: Int?, region: String, style: Style) {
        (self.scheme, self.host, self.port, self.region, self.style) = (scheme, host, port, region, style)
    }

    /// The `host` header value as signed.
    public func hostHeader(bucket: String) -> String {
        let name = style == .virtualHosted ? "\(bucket).\(host)" : host
        return port.map { "\(name):\($0)" } ?? name
    }

    /// The URI path exactly as sent and signed (S3 does not normalise it: `a//b` and `..` stay).
    public func canonicalPath(bucket: String, key: String) -> String {
        let key = SigV4.encode(key, keepSlash: true)
        return style == .virtualHosted ? "/\(key)" : "/\(SigV4.encode(bucket))/\(key)"
    }

    public func url(bucket: String, key: String) -> URL {
        URL(string: "\(scheme)://\(hostHeader(bucket: bucket))\(canonicalPath(bucket: bucket, key: key))")!
    }
}

public struct SigV4Signer: Sendable {
    public enum Method: String, Sendable { case get = "GET", put = "PUT", head = "HEAD" }

    /// The intermediate strings, exposed so tests can compare them with published vectors.
    public struct Signing: Sendable, Equatable {
        public let canonicalRequest: String
        public let stringToSign: String
        public let signature: String
        public let signedHeaders: String
        public let credentialScope: String
    }

    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = SigV4.sha256Hex(Data())

    public let credentials: AWSCredentials
    public let location: S3Location
    public let service = "s3"

    public init(credentials: AWSCredentials, location: S3Location) {
        self.credentials = credentials
        self.location = location
    }

    /// A URL anyone can use for `expires` seconds from `date`. When `contentType` is given it is
    /// signed, and the uploader must send exactly that `Content-Type` header.
    public func presign(method: Method, bucket: String, key: String, expires: Int, contentType: String? = nil,
                        date: Date = Date()) throws -> URL {
        try presignDetailed(method: method, bucket: bucket, key: key, expires: expires, contentType: contentType, date: date).url
    }

    public func presignDetailed(method: Method, bucket: String, key: String, expires: Int, contentType: String? = nil,
                                date: Date = Date()) throws -> (url: URL, signing: Signing) {
        guard (1...604_800).contains(expires) else { throw SigV4Error.invalidExpires(expires) }
        guard !bucket.isEmpty, !key.isEmpty else { throw SigV4Error.emptyBucketOrKey }
        let host = location.hostHeader(bucket: bucket), path = location.canonicalPath(bucket: bucket, key: key)
        var headers = ["host": host]
        if let contentType { headers["content-type"] = contentType }
        let (amzDate, day) = SigV4.timestamps(date)
        var query = [
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": "\(credentials.accessKeyId)/\(scope(day))",
            "X-Amz-Date": amzDate,
            "X-Amz-Expires": String(expires),
            "X-Amz-SignedHeaders": headers.keys.sorted().joined(separator: ";"),
        ]
        // The token is part of the signed query for presigned URLs (not a header).
        if let token = credentials.sessionToken { query["X-Amz-Security-Token"] = token }
        let s = sign(method: method.rawValue, path: path, query: query, headers: headers, payloadHash: Self.unsignedPayload, date: date)
        let url = URL(string: "\(location.scheme)://\(host)\(path)?\(SigV4.canonicalQuery(query))&X-Amz-Signature=\(s.signature)")!
        return (url, s)
    }

    /// Headers that authorise a request the server makes itself (e.g. HEAD object): Authorization,
    /// x-amz-date, x-amz-content-sha256 and, with a session token, x-amz-security-token. Send them
    /// together with `headers`. `payloadHash` is UNSIGNED-PAYLOAD or the hex SHA-256 of the body.
    public func signedHeaders(method: String, url: URL, headers: [String: String] = [:],
                              payloadHash: String = SigV4Signer.unsignedPayload, date: Date = Date()) throws -> [String: String] {
        guard let c = URLComponents(url: url, resolvingAgainstBaseURL: false), let scheme = c.scheme?.lowercased(),
              let host = c.host, !host.isEmpty else { throw SigV4Error.invalidURL(url.absoluteString) }
        var added = ["x-amz-date": SigV4.timestamps(date).amzDate, "x-amz-content-sha256": payloadHash]
        if let token = credentials.sessionToken { added["x-amz-security-token"] = token }
        var signed = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { $1 }).merging(added) { $1 }
        let name = SigV4.bracketed(host.lowercased())
        signed["host"] = c.port.flatMap { SigV4.isDefault(port: $0, scheme: scheme) ? nil : "\(name):\($0)" } ?? name
        // Query items are decoded and re-encoded so the canonical form does not depend on the caller's encoding.
        var query: [String: String] = [:]
        for pair in (c.percentEncodedQuery ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { String($0).removingPercentEncoding ?? String($0) }
            query[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        let path = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
        let s = sign(method: method.uppercased(), path: path, query: query, headers: signed, payloadHash: payloadHash, date: date)
        var out = added
        out["Authorization"] = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyId)/\(s.credentialScope), "
            + "SignedHeaders=\(s.signedHeaders), Signature=\(s.signature)"
        return out
    }

    /// The core of SigV4: canonical request → string to sign → HMAC with the derived key.
    /// `path` is already URI-encoded; `query` and `headers` are raw (encoded / trimmed here).
    public func sign(method: String, path: String, query: [String: String], headers: [String: String],
                     payloadHash: String, date: Date) -> Signing {
        let (amzDate, day) = SigV4.timestamps(date)
        let lower = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { $1 })
        let names = lower.keys.sorted()
        // Header values: trimmed, inner runs of whitespace collapsed to one space.
        let canonicalHeaders = names.map { "\($0):\(lower[$0]!.split(whereSeparator: \.isWhitespace).joined(separator: " "))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalRequest = [method, path, SigV4.canonicalQuery(query), canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope(day), SigV4.hex(SHA256.hash(data: Data(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, location.region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = SigV4.hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return Signing(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature,
                       signedHeaders: signedHeaders, credentialScope: scope(day))
    }

    private func scope(_ day: String) -> String { "\(day)/\(location.region)/\(service)/aws4_request" }
}

/// Encoding and formatting helpers shared by the signer and the tests.
public enum SigV4 {
    /// RFC 3986 encoding as S3 wants it: every byte except `A-Z a-z 0-9 - _ . ~` (and `/` in key
    /// paths) becomes `%XX` with uppercase hex, so space is `%20` and `+` is `%2B`.
    public static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "/") where keepSlash: out += "/"
            default: out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// Parameters encoded, then sorted by encoded name (byte order, as AWS specifies).
    public static func canonicalQuery(_ query: [String: String]) -> String {
        query.map { (encode($0.key), encode($0.value)) }
            .sorted { Array($0.0.utf8).lexicographicallyPrecedes($1.0.utf8) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// `20130524T000000Z` and `20130524`, in UTC; fractions of a second are dropped (as botocore does).
    public static func timestamps(_ date: Date) -> (amzDate: String, day: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second],
                                        from: Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)))
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!), day)
    }

    /// Hex SHA-256 of a body, the `payloadHash` for a signed payload.
    public static func sha256Hex(_ data: Data) -> String { hex(SHA256.hash(data: data)) }

    static func hex<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// An IPv6 literal keeps its brackets in the `host` header (`[::1]:9000`).
    static func bracketed(_ host: String) -> String { host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host }

    static func isDefault(port: Int, scheme: String) -> Bool { (scheme == "http" && port == 80) || (scheme == "https" && port == 443) }
}
