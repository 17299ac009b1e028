import Foundation
import OracleSupport
import Testing
@testable import AgoraAccessToken

/// Cross-checks against PyPI `agoraiotools` (an independent implementation), driven through
/// scripts/oracles/agora_oracle.py.
enum AgoraOracle {
    static var available: Bool { JSONLinesOracle.available }
    static func start() throws -> JSONLinesOracle { try JSONLinesOracle(script: "scripts/oracles/agora_oracle.py") }
}

@Suite(.enabled(if: AgoraOracle.available, "set AGORA_ORACLE_PYTHON (scripts/test does)"))
struct OracleCrossCheck {
    struct Case {
        var appId, cert, channel: String
        var uid: UInt32
        var role: RTCTokenBuilder.Role
        var tokenExpire, privilegeExpire, issueTs, salt: UInt32
    }

    static func randomCase<G: RandomNumberGenerator>(_ g: inout G) -> Case {
        let hexDigits = Array("0123456789abcdefABCDEF")
        func hex() -> String { String((0..<32).map { _ in hexDigits.randomElement(using: &g)! }) }
        // Channel names: Agora's allowed character set, 1–63 bytes.
        let channelChars = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&()+-:;<=.>?@[]^_{}|~,")
        let channel = String((0..<Int.random(in: 1...63, using: &g)).map { _ in channelChars.randomElement(using: &g)! })
        let uid: UInt32 = [0, 1, UInt32.max, UInt32.random(in: 1...UInt32.max, using: &g)].randomElement(using: &g)!
        return Case(appId: hex(), cert: hex(), channel: channel, uid: uid, role: Bool.random(using: &g) ? .publisher : .subscriber,
                    tokenExpire: UInt32.random(in: 1...86_400, using: &g), privilegeExpire: UInt32.random(in: 0...86_400, using: &g),
                    issueTs: UInt32.random(in: 1...UInt32.max, using: &g), salt: UInt32.random(in: 1...99_999_999, using: &g))
    }

    @Test func randomTokensMatchAgoraiotoolsBothWays() throws {
        let oracle = try AgoraOracle.start()
        var g = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            let c = Self.randomCase(&g)
            let ours = try RTCTokenBuilder.build(appId: c.appId, appCertificate: c.cert, channel: c.channel, uid: c.uid, role: c.role,
                                                 tokenExpire: c.tokenExpire, privilegeExpire: c.privilegeExpire,
                                                 issuedAt: Date(timeIntervalSince1970: TimeInterval(c.issueTs)), salt: c.salt)
            // 1. The same inputs give the same bytes.
            let theirs = try oracle.call(["op": "build", "appId": c.appId, "appCertificate": c.cert, "channel": c.channel, "uid": Int(c.uid),
                                          "role": c.role == .publisher ? "publisher" : "subscriber", "tokenExpire": Int(c.tokenExpire),
                                          "privilegeExpire": Int(c.privilegeExpire), "issueTs": Int(c.issueTs), "salt": Int(c.salt)])
            #expect(theirs["token"] as? String == ours, "case \(c)")
            // 2. Their parser reads our token and its signature verifies.
            let parsed = try oracle.call(["op": "parse", "token": ours, "appCertificate": c.cert])
            #expect(parsed["valid"] as? Bool == true)
            #expect(parsed["appId"] as? String == c.appId)
            #expect((parsed["issueTs"] as? Int).map(UInt32.init) == c.issueTs)
            #expect((parsed["expire"] as? Int).map(UInt32.init) == c.tokenExpire)
            let service = (parsed["services"] as? [[String: Any]])?.first
            #expect(service?["channel"] as? String == c.channel)
            #expect(service?["uid"] as? String == AccessToken2.uidString(c.uid))
            let privileges = service?["privileges"] as? [String: Int] ?? [:]
            #expect(privileges.keys.sorted() == (c.role == .publisher ? ["1", "2", "3", "4"] : ["1"]))
            #expect(privileges.values.allSatisfy { UInt32($0) == c.privilegeExpire })
            // 3. Our parser reads theirs.
            if let t = theirs["token"] as? String {
                #expect(try AccessToken2.parse(t, appCertificate: c.cert).signatureValid == true)
            }
        }
    }

    @Test func tamperedTokensFailInBothImplementations() throws {
        let oracle = try AgoraOracle.start()
        let good = try RTCTokenBuilder.build(appId: Vectors.appId, appCertificate: Vectors.cert, channel: "room", uid: 42, role: .publisher,
                                             tokenExpire: 600, privilegeExpire: 600)
        let other = String(repeating: "b", count: 32)
        #expect(try oracle.call(["op": "parse", "token": good, "appCertificate": other])["valid"] as? Bool == false)
        #expect(try AccessToken2.parse(good, appCertificate: other).signatureValid == false)
    }
}
