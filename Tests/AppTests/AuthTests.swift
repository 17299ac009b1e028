import AgoraAccessToken
import Foundation
import JWTKit
import Testing
import VaporTesting
@testable import App

@Suite struct AuthTests {
    /// Every member/creator route, with a body that would otherwise be acceptable.
    static func userRoutes(stream: String) -> [(HTTPMethod, String, [String: Any]?)] {
        [
            (.POST, "api/creator/streams/create", ["creatorId": "creator", "title": "t", "isScheduled": false]),
            (.GET, "api/streams/\(stream)/token", nil),
            (.POST, "api/creator/streams/\(stream)/stop", [:]),
            (.PATCH, "api/creator/streams/\(stream)/status", ["isLive": true]),
            (.GET, "api/creator/creator/scheduled-streams", nil),
        ]
    }

    static var adminRoutes: [(HTTPMethod, String, [String: Any]?)] { [
        (.POST, "api/admin/import", ["users": []]),
        (.PUT, "api/admin/users/x1", ["name": "X", "email": "x@example.com"]),
        (.DELETE, "api/admin/users/x1", nil),
        (.DELETE, "api/admin/follows", ["followerId": "a", "followedId": "b"]),
    ] }

    @Test func healthIsPublic() async throws {
        try await TestApp.run { t in
            let r = try await t.send(.GET, "health")
            #expect(r.status == .ok)
            #expect(r.raw == #"{"status":"ok"}"#)
        }
    }

    @Test func userRoutesRejectMissingAndBadCredentials() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let stream = try await t.createStream()
            let wrongKey = JWTKeyCollection()
            await wrongKey.add(hmac: HMACKey(from: String(repeating: "w", count: 40)), digestAlgorithm: .sha256)
            let forged = try await wrongKey.sign(UserClaims(sub: .init(value: "creator"), exp: .init(value: t.start.addingTimeInterval(600))))
            let expired = try await t.token("creator", expiresIn: -1)
            let noExp = try await {
                struct NoExp: JWTPayload { var sub: SubjectClaim; func verify(using algorithm: some JWTAlgorithm) async throws {} }
                let keys = JWTKeyCollection()
                await keys.add(hmac: HMACKey(from: TestCredentials.jwtSecret), digestAlgorithm: .sha256)
                return try await keys.sign(NoExp(sub: .init(value: "creator")))
            }()
            for (method, path, body) in Self.userRoutes(stream: stream) {
                for bearer in [nil, "garbage", forged, expired, noExp, TestCredentials.adminKey] as [String?] {
                    let r = try await t.send(method, path, bearer: bearer, json: body)
                    #expect(r.status == .unauthorized, "\(method) \(path) with \(bearer == nil ? "no token" : "bad token") → \(r.status)")
                    #expect(r.json["success"] as? Bool == false)
                    #expect(r.errorCode != nil)
                }
            }
            let r = try await t.send(.GET, "api/streams/\(stream)/token", bearer: expired)
            #expect(r.errorCode == "token_expired")
        }
    }

    @Test func expiryFollowsTheInjectedClock() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let stream = try await t.createStream()
            let token = try await t.token("m1", expiresIn: 600)
            #expect(try await t.send(.GET, "api/streams/\(stream)/token", bearer: token).status == .ok)
            t.setNow(t.start.addingTimeInterval(601))
            #expect(try await t.send(.GET, "api/streams/\(stream)/token", bearer: token).status == .unauthorized)
        }
    }

    @Test func issuerAndAudienceAreCheckedWhenConfigured() async throws {
        try await TestApp.run(adjust: { $0.jwt.issuer = "fit-platform"; $0.jwt.audience = "live-api" }) { t in
            try await t.seedBasics()
            let keys = JWTKeyCollection()
            await keys.add(hmac: HMACKey(from: TestCredentials.jwtSecret), digestAlgorithm: .sha256)
            func sign(iss: String?, aud: String?) async throws -> String {
                try await keys.sign(UserClaims(sub: .init(value: "m1"), exp: .init(value: t.start.addingTimeInterval(600)),
                                               iss: iss.map { .init(value: $0) }, aud: aud.map { .init(value: [$0]) }))
            }
            let path = "api/creator/creator/scheduled-streams"
            #expect(try await t.send(.GET, path, bearer: try await sign(iss: "fit-platform", aud: "live-api")).status == .ok)
            #expect(try await t.send(.GET, path, bearer: try await sign(iss: "someone-else", aud: "live-api")).status == .unauthorized)
            #expect(try await t.send(.GET, path, bearer: try await sign(iss: "fit-platform", aud: "other")).status == .unauthorized)
            #expect(try await t.send(.GET, path, bearer: try await sign(iss: nil, aud: nil)).status == .unauthorized)
        }
    }

    @Test func adminRoutesNeedTheAdminKey() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let member = try await t.token("m1")
            for (method, path, body) in Self.adminRoutes {
                for bearer in [nil, member, "wrong-admin-key-000000000"] as [String?] {
                    let r = try await t.send(method, path, bearer: bearer, json: body)
                    #expect(r.status == .unauthorized, "\(method) \(path) → \(r.status)")
                    #expect(r.json["success"] as? Bool == false)
                }
                let ok = try await t.send(method, path, bearer: t.admin, json: body)
                #expect(ok.status == .ok, "\(method) \(path) with admin key → \(ok.status) \(ok.raw)")
            }
        }
    }

    @Test func adminRoutesAreOffWithoutAKey() async throws {
        try await TestApp.run(adjust: { $0.adminAPIKey = nil }) { t in
            for (method, path, body) in Self.adminRoutes {
                let r = try await t.send(method, path, bearer: "anything", json: body)
                #expect(r.status == .notFound)
                #expect(r.errorCode == "feature_disabled")
            }
        }
    }
}
