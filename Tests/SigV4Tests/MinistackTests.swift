import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import SigV4

/// Against a real S3 that verifies signatures: ministack with AUTH=true, started by
/// scripts/s3/start_ministack.sh (source its env.sh). Its credentials are an IAM user's, whose
/// presigned URLs *and* header signatures ministack checks (it does not check root-key headers).
enum LiveS3 {
    static let env = ProcessInfo.processInfo.environment
    static var configured: Bool { env["S3_ENDPOINT"] != nil }

    static func signer(_ credentials: AWSCredentials? = nil) throws -> SigV4Signer {
        SigV4Signer(credentials: credentials ?? AWSCredentials(accessKeyId: env["AWS_ACCESS_KEY_ID"]!, secretAccessKey: env["AWS_SECRET_ACCESS_KEY"]!),
                    location: try S3Location(endpoint: env["S3_ENDPOINT"]!, region: env["AWS_REGION"] ?? "us-east-1"))
    }

    static var bucket: String { env["AWS_BUCKET_NAME"]! }

    /// A fresh key with the characters that break naive encoders.
    static func newKey() -> String { "live/\(UUID().uuidString)/a b+c(1)\u{E9}~\u{1F600}.png" }

    static func send(_ method: String, _ url: URL, headers: [String: String] = [:], body: Data? = nil) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.httpBody = body
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
        return ((response as! HTTPURLResponse).statusCode, data)
    }

    /// The same URL with the last hex digit of X-Amz-Signature changed.
    static func tampered(_ url: URL) -> URL {
        var s = url.absoluteString
        let last = s.removeLast()
        return URL(string: s + (last == "0" ? "1" : "0"))!
    }
}

@Suite(.enabled(if: LiveS3.configured, "run scripts/s3/start_ministack.sh WORKDIR and source WORKDIR/env.sh"))
struct MinistackRoundTrip {
    @Test func presignedPutThenGetAndSignedHead() async throws {
        let signer = try LiveS3.signer(), key = LiveS3.newKey(), bucket = LiveS3.bucket
        let bytes = Data((0..<4096).map { _ in UInt8.random(in: 0...255) })
        let put = try signer.presign(method: .put, bucket: bucket, key: key, expires: 300, contentType: "image/png")
        #expect(try await LiveS3.send("PUT", put, headers: ["Content-Type": "image/png"], body: bytes).status == 200)

        let get = try await LiveS3.send("GET", try signer.presign(method: .get, bucket: bucket, key: key, expires: 300))
        #expect(get.status == 200)
        #expect(get.body == bytes)

        // The server's own request: header-signed HEAD (both payload-hash forms S3 accepts).
        let url = signer.location.url(bucket: bucket, key: key)
        for hash in [SigV4Signer.unsignedPayload, SigV4Signer.emptyPayloadHash] {
            #expect(try await LiveS3.send("HEAD", url, headers: try signer.signedHeaders(method: "HEAD", url: url, payloadHash: hash)).status == 200)
        }
        let missing = signer.location.url(bucket: bucket, key: key + ".missing")
        #expect(try await LiveS3.send("HEAD", missing, headers: try signer.signedHeaders(method: "HEAD", url: missing)).status == 404)
        // Header signatures are really checked: a wrong secret is refused.
        var wrong = signer.credentials
        wrong.secretAccessKey += "x"
        let forged = try LiveS3.signer(wrong).signedHeaders(method: "HEAD", url: url)
        #expect(try await LiveS3.send("HEAD", url, headers: forged).status == 403)
    }

    @Test func tamperedExpiredAndWrongContentTypeAreRefused() async throws {
        let signer = try LiveS3.signer(), key = LiveS3.newKey(), bucket = LiveS3.bucket
        let body = Data("payload".utf8)
        let put = try signer.presign(method: .put, bucket: bucket, key: key, expires: 300, contentType: "image/png")
        #expect(try await LiveS3.send("PUT", LiveS3.tampered(put), headers: ["Content-Type": "image/png"], body: body).status == 403)
        #expect(try await LiveS3.send("PUT", put, headers: ["Content-Type": "text/plain"], body: body).status == 403)
        let expired = try signer.presign(method: .put, bucket: bucket, key: key, expires: 60, contentType: "image/png",
                                         date: Date().addingTimeInterval(-3600))
        #expect(try await LiveS3.send("PUT", expired, headers: ["Content-Type": "image/png"], body: body).status == 403)
        // None of them stored anything; then the good URL works, and its GET twin is refused once tampered or expired.
        #expect(try await LiveS3.send("GET", try signer.presign(method: .get, bucket: bucket, key: key, expires: 300)).status == 404)
        #expect(try await LiveS3.send("PUT", put, headers: ["Content-Type": "image/png"], body: body).status == 200)
        let get = try signer.presign(method: .get, bucket: bucket, key: key, expires: 300)
        #expect(try await LiveS3.send("GET", LiveS3.tampered(get)).status == 403)
        #expect(try await LiveS3.send("GET", try signer.presign(method: .get, bucket: bucket, key: key, expires: 1,
                                                              date: Date().addingTimeInterval(-120))).status == 403)
        #expect(try await LiveS3.send("GET", put).status == 403)  // a PUT URL is not a GET URL
        #expect(try await LiveS3.send("GET", get).body == body)
    }

    @Test(.enabled(if: LiveS3.env["S3_SESSION_TOKEN"] != nil, "start_ministack.sh exports STS credentials"))
    func sessionTokenCredentials() async throws {
        let env = LiveS3.env
        let session = AWSCredentials(accessKeyId: env["S3_SESSION_ACCESS_KEY_ID"]!, secretAccessKey: env["S3_SESSION_SECRET_ACCESS_KEY"]!,
                                     sessionToken: env["S3_SESSION_TOKEN"]!)
        let signer = try LiveS3.signer(session), key = LiveS3.newKey(), bucket = LiveS3.bucket
        let put = try signer.presign(method: .put, bucket: bucket, key: key, expires: 300)
        #expect(put.query!.contains("X-Amz-Security-Token="))
        #expect(try await LiveS3.send("PUT", put, body: Data("x".utf8)).status == 200)
        let url = signer.location.url(bucket: bucket, key: key)
        #expect(try await LiveS3.send("HEAD", url, headers: try signer.signedHeaders(method: "HEAD", url: url)).status == 200)
        // Another token (signed consistently) is refused: the token is checked, not just signed.
        var other = session
        other.sessionToken! += "x"
        let bad = try LiveS3.signer(other).presign(method: .get, bucket: bucket, key: key, expires: 300)
        #expect((400..<500).contains(try await LiveS3.send("GET", bad).status))
    }
}
