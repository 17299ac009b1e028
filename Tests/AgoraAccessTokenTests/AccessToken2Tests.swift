import Foundation
import Testing
@testable import AgoraAccessToken

/// Published vectors from ../shared/reference/agora.md §3 (AgoraIO/Tools test suites).
enum Vectors {
    static let appId = "970CA35de60c44645bbae8a215061b33"
    static let cert = "5CFd2fd1755d40ecb72977518be15d3b"
    static let channel = "7d72365eb983485397e3e3f9d460bdda"
    static let uid: UInt32 = 2_882_341_273
    static let v1 = "007eJxTYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxgDCaiTj"
    static let v1g = "007eJxSYBBbsMMnKq7p9Hf/HcIX5kce9b518kCiQgSr5Zrp4X1Tu6UUGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiVwMRhYWRsYmhkbmxoAAAAD//8JqJOM="
    static let v2 = "007eJxTYLhzZP08Lxa1Pg57+TcXb/3cZ3wi4V6kbpbOog0G2dOYk20UGCzNDZwdjU1TUs0Mkk1MzExMk5ISUy0SjQxNDcwMk4yN3b8IMEQwMTAwMoAwBIL4CgzmKeZGxmamqUmWFsYmFqbGluapxqnGaZYpJmYGSSkpiQwMADacImo="
    static let v4 = "007eJxTYOAQsrQ5s3TfH+1tvy8zZZ46EpCc0V43JXdGd2jS8porKo4KDJbmBs6OxqYpqWYGySYmZiamSUmJqRaJRoamBmaGScbG7l8EGCKYGBgYGRgYmIAkCxCD+ExgkhlMsoBJBQbzFHMjYzPT1CRLC2MTC1NjS/NU41TjNMsUEzODpJSURC4GIwsLI2MTQyNzY5BZEJM4GUpSi0viS4tTiwAipyp4"
    static let v5 = "007eJxTYOCdJftjyTM2zxW6Xhm/5T0j5LdcUt/xYVt48fb5Mp3PX9coMFiaGzg7GpumpJoZJJuYmJmYJiUlplokGhmaGpgZJhkbu38RYIhgYmBgZABhJiBmBPM5GUpSi0viS4tTiwBZVh6A"
    static let v6 = "007eJxTYNAIsnbS3v/A5t2TC6feR15r+6cq8bqAvfaW+tk/Vzz+p6xTYLA0N3B2NDZNSTUzSDYxMTMxTUpKTLVINDI0NTAzTDI2dv8iwBDBxMDAyADCrEDMCOZzMRhZWBgZmxgamRsDAB+lHrg="
    static let v7 = "007eJxTYNDNaz3snC8huEfHWdz6s98qltq4zqy9fl99Uh0FDvy6F6DAYGlu4OxobJqSamaQbGJiZmKalJSYapFoZGhqYGaYZGzs/kWAIYKJgYGRAYRZgZgJzGdgAACt8hhr"
    static let v8 = "007eJxTYHh8IPKzTvBdf9ce8bk7G61vs06oca1e815/ot4+x7rfjDIKDJbmBs6OxqYpqWYGySYmZiamSUmJqRaJRoamBmaGScbG7l8EGCKYGBgYGRgYWIEkCxCD+ExgkhlMsoBJBQbzFHMjYzPT1CRLC2MTC1NjS/NU41TjNMsUEzODpJSURC4GIwsLI2MTQyNzYyagORCTkEVZ4KKsWOXZgWIQm1HF//8HAL01L5I="
    static let pubUid = "007eJxTYDhuGCT90E3Yo2+N3efJV5hX1K1MZAqae/Sa8UP9VXvOhfArMFiaGzg7GpumpJoZJJuYmJmYJiUlplokGhmaGpgZJhkbu38RYIhgYmBgZABhRgYWIAbxmcAkM5hkAZMKDOYp5kbGZqapSZYWxiYWpsaW5qnGqcZplikmZgZJKSmJXAxGFhZGxiaGRubGAKizJcs="
    static let pubUid0 = "007eJxTYLi32Teo5m76Rq2Ntc2TPa3D5X7K31zkf1jo4waXA1V+/38qMFiaGzg7GpumpJoZJJuYmJmYJiUlplokGhmaGpgZJhkbu38RYIhgYmBgZABhRgYWIAbxmcAkM5hkAZMKDOYp5kbGZqapSZYWxiYWpsaW5qnGqcZplikmZgZJKSmJDAwAH8gliw=="
    static let pub3600 = "007eJxTYHDQ//PYyc2xIJc//cqrTcJdf47l/VsdxVCZUjFxQw/fNkYFBktzA2dHY9OUVDODZBMTMxPTpKTEVItEI0NTAzPDJGNjho/BqQJ8DAyWBgwMjEDIAsQgwAQmmcEkC5hUYDBPMTcyNjNNTbK0MDaxMDW2NE81TjVOs0wxMTNISklJ5GIwsrAwMjYxNDI3BgCvAyUs"
}

private func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
private let t1111111 = Date(timeIntervalSince1970: 1_111_111)

@Suite struct PublishedVectors {
    @Test func v1SubscriberUid() throws {
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: Vectors.channel,
                                              uid: Vectors.uid, role: .subscriber, tokenExpire: 600, privilegeExpire: 600, issuedAt: t1111111, salt: 1)
        #expect(token == Vectors.v1)
    }

    @Test func v2WildcardUidZero() throws {
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: Vectors.channel,
                                              uid: 0, role: .subscriber, tokenExpire: 600, privilegeExpire: 600, issuedAt: t1111111, salt: 1)
        #expect(token == Vectors.v2)
    }

    @Test func v3AccountEqualsUid() throws {
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: Vectors.channel,
                                              account: "2882341273", role: .subscriber, tokenExpire: 600, privilegeExpire: 600, issuedAt: t1111111, salt: 1)
        #expect(token == Vectors.v1)
    }

    @Test func stringZeroAccountIsNotAWildcard() throws {
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: Vectors.channel,
                                              account: "0", role: .subscriber, tokenExpire: 600, privilegeExpire: 600, issuedAt: t1111111, salt: 1)
        #expect(token != Vectors.v2)
        guard case .rtc(_, let uid, _) = try AccessToken2.parse(token).token.services.first else { Issue.record("no rtc"); return }
        #expect(uid == "0")
    }

    @Test(arguments: [
        (Vectors.uid, UInt32(600), UInt32(600), UInt32(1_111_111), UInt32(1), Vectors.pubUid),
        (UInt32(0), 600, 600, 1_111_111, 1, Vectors.pubUid0),
        (Vectors.uid, 3600, 0, 1_700_000_000, 12345, Vectors.pub3600),
    ])
    func derivedPublisherVectors(uid: UInt32, tokenExpire: UInt32, privilegeExpire: UInt32, issueTs: UInt32, salt: UInt32, expected: String) throws {
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: Vectors.channel, uid: uid,
                                              role: .publisher, tokenExpire: tokenExpire, privilegeExpire: privilegeExpire,
                                              issuedAt: Date(timeIntervalSince1970: TimeInterval(issueTs)), salt: salt)
        #expect(token == expected)
    }

    @Test func multiServiceVectorsV4V5V6V7() throws {
        let rtc = AccessToken2.Service.rtc(channel: Vectors.channel, uid: "2882341273", privileges: [1: 600, 2: 600, 3: 600, 4: 600])
        func build(_ services: [AccessToken2.Service]) throws -> String {
            try AccessToken2(appId: Vectors.appId, issueTs: 1_111_111, expire: 600, salt: 1, services: services).build(appCertificate: Vectors.cert)
        }
        // Given in reverse order: services are written sorted by type.
        #expect(try build([.rtm(userId: "test_user", privileges: [1: 600]), rtc]) == Vectors.v4)
        #expect(try build([.rtm(userId: "test_user", privileges: [1: 600])]) == Vectors.v5)
        #expect(try build([.chat(userId: "2882341273", privileges: [1: 600])]) == Vectors.v6)
        #expect(try build([.chat(userId: "", privileges: [2: 600])]) == Vectors.v7)
    }

    @Test func intermediateSigningValues() throws {
        let t = AccessToken2(appId: Vectors.appId, issueTs: 1_111_111, expire: 600, salt: 1,
                             services: [.rtc(channel: Vectors.channel, uid: "2882341273", privileges: [1: 600])])
        let info = try t.signingInfo()
        #expect(info.count == 104)
        #expect(hex(info) == "2000393730434133356465363063343436343562626165386132313530363162333347f41000580200000100000001000100010001005802000020003764373233363565623938333438353339376533653366396434363062646461" + "0a0032383832333431323733")
        #expect(hex(AccessToken2.signature(appCertificate: Vectors.cert, issueTs: 1_111_111, salt: 1, signingInfo: info))
                == "16a0b84c5a5e82cbf74fb813d09f59c54bdac9c06120580539ac97578e958b1a")
    }
}

@Suite struct Parsing {
    @Test func parsesAndVerifiesV1() throws {
        let (t, valid) = try AccessToken2.parse(Vectors.v1, appCertificate: Vectors.cert)
        #expect(valid == true)
        #expect(t.appId == Vectors.appId && t.issueTs == 1_111_111 && t.expire == 600 && t.salt == 1)
        #expect(t.services == [.rtc(channel: Vectors.channel, uid: "2882341273", privileges: [1: 600])])
    }

    @Test func goDeflateVariantVerifiesToo() throws {
        #expect(try AccessToken2.verify(Vectors.v1g, appCertificate: Vectors.cert) == AccessToken2.verify(Vectors.v1, appCertificate: Vectors.cert))
    }

    @Test func wrongCertificateFails() throws {
        #expect(try AccessToken2.parse(Vectors.v1, appCertificate: String(repeating: "a", count: 32)).signatureValid == false)
        #expect(throws: AccessToken2.Error.invalidSignature) { try AccessToken2.verify(Vectors.v1, appCertificate: String(repeating: "a", count: 32)) }
    }

    @Test func unknownServiceTypesStillVerify() throws {
        // V8 carries an APaaS service (type 7), which this parser does not decode.
        let (t, valid) = try AccessToken2.parse(Vectors.v8, appCertificate: Vectors.cert)
        #expect(valid == true)
        #expect(t.services.last == .unknown(type: 7))
    }

    @Test func rejectsGarbage() {
        #expect(throws: AccessToken2.Error.badPrefix) { try AccessToken2.parse("006abc") }
        #expect(throws: AccessToken2.Error.badBase64) { try AccessToken2.parse("007!!!") }
        #expect(throws: AccessToken2.Error.inflateFailed) { try AccessToken2.parse("007" + Data("not zlib".utf8).base64EncodedString()) }
        // A truncated stream must not read past the end.
        let truncated = try! Zlib.compress(Array(try! Zlib.decompress(Array(Data(base64Encoded: String(Vectors.v1.dropFirst(3)))!)).prefix(60)))
        #expect(throws: AccessToken2.Error.truncated) { try AccessToken2.parse("007" + Data(truncated).base64EncodedString()) }
    }

    @Test func builderRefusesBadCredentials() {
        #expect(throws: AccessToken2.Error.invalidAppId) {
            try RTCTokenBuilder.build(appId: "short", appCertificate: Vectors.cert, channel: "c", uid: 1, role: .publisher, tokenExpire: 1, privilegeExpire: 1)
        }
        #expect(throws: AccessToken2.Error.invalidCertificate) {
            try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: "zz" + Vectors.cert.dropFirst(2), channel: "c", uid: 1, role: .publisher, tokenExpire: 1, privilegeExpire: 1)
        }
    }

    @Test func expiryIsRelative() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let token = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: "c", uid: 7, role: .publisher,
                                              tokenExpire: 3600, privilegeExpire: 3600, issuedAt: now)
        let t = try AccessToken2.verify(token, appCertificate: Vectors.cert)
        #expect(t.issueTs == 1_800_000_000)
        #expect(t.expire == 3600)
        #expect(t.services == [.rtc(channel: "c", uid: "7", privileges: [1: 3600, 2: 3600, 3: 3600, 4: 3600])])
    }
}
