import Foundation
import OracleSupport
import Testing
@testable import SigV4

/// Cross-checks against botocore (an independent SigV4 implementation), scripts/s3/sigv4_oracle.py.
enum BotocoreOracle {
    static var available: Bool { JSONLinesOracle.available }
    static func start() throws -> JSONLinesOracle { try JSONLinesOracle(script: "scripts/s3/sigv4_oracle.py") }
}

@Suite(.enabled(if: BotocoreOracle.available, "set AGORA_ORACLE_PYTHON (scripts/test does)"))
struct BotocoreCrossCheck {
    struct Case {
        var location: S3Location
        var oracleEndpoint: String
        var credentials: AWSCredentials
        var method: SigV4Signer.Method
        var bucket, key: String
        var expires: Int
        var contentType: String?
        var time: Double
    }

    static func pick<G: RandomNumberGenerator>(_ s: String, _ n: ClosedRange<Int>, _ g: inout G) -> String {
        let chars = Array(s)
        return String((0..<Int.random(in: n, using: &g)).map { _ in chars.randomElement(using: &g)! })
    }

    static func randomCase<G: RandomNumberGenerator>(_ g: inout G) throws -> Case {
        let region = ["us-east-1", "eu-central-1", "ap-southeast-2", "sa-east-1"].randomElement(using: &g)!
        let location: S3Location, endpoint: String
        if Bool.random(using: &g) {
            location = .aws(region: region)
            endpoint = "https://s3.\(region).amazonaws.com"
        } else {
            // Default ports are left out: botocore keeps `:80` in its URL text (not in the signed host).
            endpoint = ["http://127.0.0.1:9000", "http://localhost:4566", "https://minio.example.com", "https://s3.example.org:8443"]
                .randomElement(using: &g)!
            location = try S3Location(endpoint: endpoint, region: region)
        }
        // Keys: spaces, `+`, `()`, `~`, `*`, reserved URL characters, slashes (also doubled), and
        // non-ASCII (precomposed, combining, astral).
        let pieces = ["a", "Z", "0", "9", " ", "+", "(", ")", "~", "*", "-", "_", ".", "/", "//", "!", "'", "=", "&", "?", "#",
                      "%", ",", ";", ":", "@", "$", "[", "]", "é", "e\u{301}", "ü", "日本", "😀", "Ω", "\u{A0}"]
        let key = (0..<Int.random(in: 1...24, using: &g)).map { _ in pieces.randomElement(using: &g)! }.joined()
        let alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
        let bucket = pick(alnum, 1...1, &g) + pick(alnum + "-", 1...20, &g) + pick(alnum, 1...1, &g)
        let method = [SigV4Signer.Method.put, .get, .head].randomElement(using: &g)!
        let contentType = method == .put && Bool.random(using: &g)
            ? ["image/png", "video/mp4", "application/octet-stream", "text/plain; charset=utf-8"].randomElement(using: &g)! : nil
        let token = Bool.random(using: &g) ? pick("ABCDEFabcdef0123456789/+=", 20...120, &g) : nil
        let credentials = AWSCredentials(accessKeyId: pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16...20, &g),
                                         secretAccessKey: pick("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40...40, &g),
                                         sessionToken: token)
        return Case(location: location, oracleEndpoint: endpoint, credentials: credentials, method: method, bucket: bucket, key: key,
                    expires: [1, 604_800, Int.random(in: 1...604_800, using: &g)].randomElement(using: &g)!, contentType: contentType,
                    time: Double.random(in: 946_684_800...2_082_758_399, using: &g))  // 2000 ... 2035
    }

    /// The URL up to `?`, and its query items in a fixed order (botocore does not sort them).
    static func normalized(_ url: String) -> (String, [String]) {
        let parts = url.split(separator: "?", maxSplits: 1).map(String.init)
        return (parts[0], parts.count > 1 ? parts[1].split(separator: "&").map(String.init).sorted() : [])
    }

    static func base(_ c: Case) -> [String: Any] {
        var r: [String: Any] = ["region": c.location.region, "accessKey": c.credentials.accessKeyId,
                                "secret": c.credentials.secretAccessKey, "time": c.time]
        if let t = c.credentials.sessionToken { r["token"] = t }
        return r
    }

    @Test func presignedURLsMatchBotocore() throws {
        let oracle = try BotocoreOracle.start()
        var g = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let c = try Self.randomCase(&g)
            let ours = try SigV4Signer(credentials: c.credentials, location: c.location)
                .presign(method: c.method, bucket: c.bucket, key: c.key, expires: c.expires, contentType: c.contentType,
                         date: Date(timeIntervalSince1970: c.time))
            var request = Self.base(c)
            request.merge(["op": "presign", "method": c.method.rawValue, "endpoint": c.oracleEndpoint,
                           "style": c.location.style == .path ? "path" : "virtual", "bucket": c.bucket, "key": c.key,
                           "expires": c.expires]) { $1 }
            if let ct = c.contentType { request["contentType"] = ct }
            let theirs = try #require(try oracle.call(request)["url"] as? String)
            let (a, b) = (Self.normalized(ours.absoluteString), Self.normalized(theirs))
            #expect(a.0 == b.0, "key \(c.key.debugDescription)")
            #expect(a.1 == b.1, "key \(c.key.debugDescription) \(c)")
        }
    }

    @Test func signedHeadersMatchBotocore() throws {
        let oracle = try BotocoreOracle.start()
        var g = SystemRandomNumberGenerator()
        for _ in 0..<100 {
            let c = try Self.randomCase(&g)
            let method = ["HEAD", "GET", "PUT", "DELETE"].randomElement(using: &g)!
            var url = c.location.url(bucket: c.bucket, key: c.key).absoluteString
            if Bool.random(using: &g) { url += "?versionId=\(SigV4.encode(Self.pick("ab+/= 9é", 1...12, &g)))&acl=" }
            var headers: [String: String] = [:]
            if Bool.random(using: &g) { headers["X-Amz-Meta-Note"] = "  two   spaces\tand tab " }
            if let ct = c.contentType { headers["Content-Type"] = ct }
            let unsigned = Bool.random(using: &g)
            let body = unsigned ? "" : Self.pick("xyz é", 0...30, &g)
            let ours = try SigV4Signer(credentials: c.credentials, location: c.location)
                .signedHeaders(method: method, url: URL(string: url)!, headers: headers,
                               payloadHash: unsigned ? SigV4Signer.unsignedPayload : SigV4.sha256Hex(Data(body.utf8)),
                               date: Date(timeIntervalSince1970: c.time))
            var request = Self.base(c)
            request.merge(["op": "signHeaders", "method": method, "url": url, "headers": headers, "unsignedPayload": unsigned,
                           "body": body]) { $1 }
            let reply = try oracle.call(request)
            let theirs = try #require(reply["headers"] as? [String: String])
            // What botocore added (Authorization, x-amz-date, x-amz-content-sha256, x-amz-security-token), names lower-cased.
            let lower = { (h: [String: String]) in Dictionary(uniqueKeysWithValues: h.map { ($0.key.lowercased(), $0.value) }) }
            #expect(lower(ours) == lower(theirs.filter { headers[$0.key] == nil }), "url \(url)\n\(reply["canonicalRequest"] ?? "")")
        }
    }
}
