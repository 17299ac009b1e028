import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 21: push notifications through APNs (HTTP/2) and FCM, against fakes that verify the
/// JWTs with PyJWT + cryptography and answer the documented errors.
@Suite(.enabled(if: FakePush.available, "needs the oracle venv (AGORA_ORACLE_PYTHON)"))
struct PushTests {
    static func iosToken(_ prefix: String, _ n: Int) -> String { prefix + String(repeating: "0", count: 64 - prefix.count - String(n).count) + String(n) }

    static func register(_ t: TestApp, _ user: String, platform: String, token: String) async throws -> TestApp.Reply {
        try await t.send(.POST, "api/me/devices", bearer: try await t.token(user), json: ["platform": platform, "token": token, "appVersion": "3.2.1", "locale": "en-US"])
    }

    static func goLive(_ t: TestApp) async throws -> String {
        let id = try await t.createStream(scheduled: false)
        try await t.drainWorker()
        return id
    }

    @Test func aThousandLiveNowPushesShareOneProviderJWTAndCarryTheHeaders() async throws {
        let fake = try FakePush()
        defer { fake.stop() }
        try await TestApp.run(adjust: { $0.push = fake.settings }) { t in
            try await t.seedBasics()
            let members = (0..<1000).map { "p\($0)" }
            try await t.importUsers(members.map { TestApp.user($0) }, follows: members.map { ["followerId": $0, "followedId": "creator"] })
            for (i, m) in members.enumerated() {
                try await Devices.register(user: m, platform: .ios, token: Self.iosToken("ab", i), appVersion: nil, locale: nil,
                                           now: t.app.deps.clock.now(), on: t.app.db.sql)
            }
            let stream = try await Self.goLive(t)
            try await t.app.deps.push.drain()
            func sent() async throws -> Int? {
                let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator"))
                return ((counts.json["push"] as? [String: Any])?["live_now"] as? [String: Int])?["sent"]
            }
            // On a loaded machine a push can run past its 10 s timeout (the Python fake answers late): it is
            // retried after its backoff, which this test's clock reaches only when moved (drain stops when
            // nothing is due). Such a push may have reached the fake too: every member's token at least once.
            var now = t.app.deps.clock.now()
            for _ in 0..<6 where try await sent() != 1000 {
                now = now.addingTimeInterval(300) // past any of the first retries' backoff; six steps stay inside one provider JWT (50 min)
                t.setNow(now)
                try await t.app.deps.push.drain()
            }
            let log = try await fake.log()
            let pushes = log["apns"] as? [[String: Any]] ?? []
            let tokens = Set(pushes.compactMap { $0["token"] as? String })
            #expect(tokens == Set((0..<1000).map { Self.iosToken("ab", $0) }) && log["jwts"] as? Int == 1,
                    "every member's device, one provider JWT for every push: \(log["jwts"] ?? "")")
            let first = try #require(pushes.first)
            let headers = first["headers"] as? [String: String] ?? [:]
            #expect(headers["apns-topic"] == "com.example.fitlive" && headers["apns-push-type"] == "alert" && headers["apns-priority"] == "10")
            #expect(headers["apns-collapse-id"] == "\(stream):live_now")
            let expiration = Int(headers["apns-expiration"] ?? "") ?? 0
            #expect(expiration > Int(t.app.deps.clock.now().timeIntervalSince1970), "a live-now push expires after the class, not now")
            let payload = first["payload"] as? [String: Any] ?? [:]
            let alert = (payload["aps"] as? [String: Any])?["alert"] as? [String: Any] ?? [:]
            #expect(alert["title"] as? String == "🔴 Name creator is LIVE NOW!" && alert["body"] as? String == "Morning HIIT")
            #expect(payload["url"] as? String == "\(TestCredentials.frontend)/live/\(stream)" && payload["streamId"] as? String == stream)
            #expect(try await sent() == 1000)
        }
    }

    @Test func deadTokensRemoveDevicesAndErrorsAreRetriedAsDocumented() async throws {
        let fake = try FakePush()
        defer { fake.stop() }
        try await TestApp.run(adjust: { $0.push = fake.settings }) { t in
            try await t.seedBasics()
            let users = ["i1", "i2", "i3", "i4", "a1", "a2", "a3"]
            try await t.importUsers(users.map { TestApp.user($0) }, follows: users.map { ["followerId": $0, "followedId": "creator"] })
            let tokens: [(String, String, String)] = [
                ("i1", "ios", Self.iosToken("dead", 1)), ("i2", "ios", Self.iosToken("bad0", 2)), ("i3", "ios", Self.iosToken("e0e0", 3)),
                ("i4", "ios", Self.iosToken("5030", 4)), ("a1", "android", "dead:APA91b-1"), ("a2", "android", "quota:APA91b-2"),
                ("a3", "android", "good:APA91b_3"),
            ]
            for (user, platform, token) in tokens {
                let r = try await Self.register(t, user, platform: platform, token: token)
                #expect(r.status == .created, "\(r.raw)")
            }
            let stream = try await Self.goLive(t)
            for _ in 0..<10 {
                try await t.app.deps.push.drain()
                t.setNow(t.app.deps.clock.now().addingTimeInterval(120))
            }
            let log = try await fake.log()
            let apns = (log["apns"] as? [[String: Any]] ?? []).compactMap { $0["token"] as? String }
            let fcm = (log["fcm"] as? [[String: Any]] ?? []).compactMap { $0["token"] as? String }
            #expect(Set(apns) == [Self.iosToken("e0e0", 3), Self.iosToken("5030", 4)], "\(apns)")
            #expect(Set(fcm) == ["quota:APA91b-2", "good:APA91b_3"], "\(fcm)")
            #expect(log["jwts"] as? Int == 2, "ExpiredProviderToken: one new JWT, the push retried once")
            #expect(log["tokenRequests"] as? Int == 1, "one OAuth token for every FCM push")
            struct Row: Decodable { let user_id: String }
            let left = Set(try await t.app.db.sql.raw("SELECT user_id FROM devices").all(decoding: Row.self).map(\.user_id))
            #expect(left == ["i3", "i4", "a2", "a3"], "dead tokens removed: \(left)")
            let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator"))
            let live = (counts.json["push"] as? [String: Any])?["live_now"] as? [String: Int] ?? [:]
            #expect(live["sent"] == 4 && live["failed"] == 3, "\(live)")
        }
    }

    @Test func pushFollowsItsOwnSwitchesAndAnUnconfiguredChannelSkips() async throws {
        let fake = try FakePush()
        defer { fake.stop() }
        var apnsOnly = fake.settings
        apnsOnly.fcm = nil
        try await TestApp.run(adjust: { $0.push = apnsOnly }) { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("m3")], follows: ["m1", "m2", "m3"].map { ["followerId": $0, "followedId": "creator"] })
            _ = try await Self.register(t, "m1", platform: "ios", token: Self.iosToken("a1", 1))
            _ = try await Self.register(t, "m2", platform: "ios", token: Self.iosToken("a2", 2))
            _ = try await Self.register(t, "m3", platform: "android", token: "fcm-token-3")
            // m2: no live-now push (email still on); m1: scheduled pushes on.
            let off = try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("m2"), json: ["push": ["liveNow": false]])
            #expect(((off.json["preferences"] as? [String: Any])?["push"] as? [String: Bool])?["liveNow"] == false)
            let defaults = try await t.send(.GET, "api/me/notification-preferences", bearer: try await t.token("m3"))
            #expect(((defaults.json["preferences"] as? [String: Any])?["push"] as? [String: Bool]) == ["liveNow": true, "reminder": true, "scheduled": false, "rescheduled": false, "cancelled": false])
            _ = try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("m1"), json: ["push": ["scheduled": true]])
            _ = try await t.createStream()
            try await t.drainWorker()
            try await t.app.deps.push.drain()
            var apns = (try await fake.log()["apns"] as? [[String: Any]] ?? []).compactMap { $0["token"] as? String }
            #expect(apns == [Self.iosToken("a1", 1)], "only m1 wants scheduled pushes")
            let live = try await Self.goLive(t)
            try await t.app.deps.push.drain()
            apns = (try await fake.log()["apns"] as? [[String: Any]] ?? []).compactMap { $0["token"] as? String }
            #expect(apns.count == 2 && apns.last == Self.iosToken("a1", 1), "m2 switched live-now pushes off")
            let counts = try await t.send(.GET, "api/creator/streams/\(live)/notifications", bearer: try await t.token("creator"))
            let push = (counts.json["push"] as? [String: Any])?["live_now"] as? [String: Int] ?? [:]
            #expect(push["sent"] == 1 && push["skipped"] == 1, "Android without FCM credentials: skipped (\(push))")
            struct Row: Decodable { let last_reply: String? }
            let reply = try await t.app.db.sql.raw("SELECT last_reply FROM push_deliveries WHERE status = 'skipped'").first(decoding: Row.self)
            #expect(reply?.last_reply == PushDelivery.channelDisabled)
        }
    }

    /// The provider JWT is reused for 50 minutes and replaced after (Apple: not more often than
    /// every 20, never older than 60); the FCM access token until a minute before it expires.
    @Test func tokensAreRefreshedOnAnInjectedClock() async throws {
        let fake = try FakePush()
        defer { fake.stop() }
        try await TestApp.run(adjust: { $0.push = fake.settings }) { t in
            let apns = try #require(t.app.deps.push.apns as? APNsClient)
            let first = try apns.providerToken()
            t.setNow(t.start.addingTimeInterval(21 * 60))
            #expect(try apns.providerToken() == first)
            t.setNow(t.start.addingTimeInterval(49 * 60))
            #expect(try apns.providerToken() == first)
            t.setNow(t.start.addingTimeInterval(50 * 60))
            let second = try apns.providerToken()
            #expect(second != first && apns.tokensMade.withLockedValue { $0 } == 2)
            let fcm = try #require(t.app.deps.push.fcm as? FCMClient)
            let a = try await fcm.accessToken()
            t.setNow(t.start.addingTimeInterval(50 * 60 + 3500))
            #expect(try await fcm.accessToken() == a)
            t.setNow(t.start.addingTimeInterval(50 * 60 + 3541))
            #expect(try await fcm.accessToken() != a && fcm.tokensFetched.withLockedValue { $0 } == 2)
            #expect(try await fake.log()["tokenRequests"] as? Int == 2)
        }
    }

    @Test func devicesAreValidatedOwnedOnceAndRemovable() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            for (platform, token) in [("ios", "xyz"), ("ios", String(repeating: "g", count: 64)), ("ios", String(repeating: "a", count: 63)),
                                      ("android", "has space"), ("android", String(repeating: "a", count: 4097)), ("windows", "abc")] {
                let r = try await Self.register(t, "m1", platform: platform, token: token)
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "\(platform) \(token.prefix(10))")
            }
            let token = Self.iosToken("ff", 7)
            #expect(try await Self.register(t, "m1", platform: "ios", token: token).status == .created)
            #expect(try await Self.register(t, "m1", platform: "ios", token: token).status == .ok, "re-registering is idempotent")
            // Signed in as someone else on the same phone: the token moves.
            #expect(try await Self.register(t, "m2", platform: "ios", token: token).status == .created)
            struct Row: Decodable { let user_id: String }
            let owners = try await t.app.db.sql.raw("SELECT user_id FROM devices").all(decoding: Row.self).map(\.user_id)
            #expect(owners == ["m2"])
            #expect(try await t.send(.DELETE, "api/me/devices/\(token)", bearer: try await t.token("m1")).json["deleted"] as? Bool == false)
            #expect(try await t.send(.DELETE, "api/me/devices/\(token)", bearer: try await t.token("m2")).json["deleted"] as? Bool == true)
        }
    }
}

/// kill -9 of `App worker` in the middle of a push fan-out: after a restart every device gets
/// its push; duplicates at most the in-flight window (PUSH_CONCURRENCY).
@Suite(.serialized, .enabled(if: FakePush.available && MailPeers.available && ProcessInfo.processInfo.environment["APP_BINARY"] != nil,
                            "needs APP_BINARY, the SMTP peers and the oracle venv (scripts/test provides them)"))
struct PushCrashTests {
    @Test func killDashNineMidFanOutLosesNoPush() async throws {
        // 300 ms a push: from the first 40 to all 400 takes the worker ~7 s, time enough for a loaded machine to kill it midway.
        let fake = try FakePush(latencyMilliseconds: 300)
        defer { fake.stop() }
        let members = 400, window = 16
        try await TestApp.run(realClock: true, fileDatabase: true, adjust: { $0.push = fake.settings }) { t in
            try await t.seedBasics()
            let ids = (0..<members).map { "k\($0)" }
            try await t.importUsers(ids.map { TestApp.user($0) }, follows: ids.map { ["followerId": $0, "followedId": "creator"] })
            for (i, m) in ids.enumerated() {
                try await Devices.register(user: m, platform: .ios, token: PushTests.iosToken("cd", i), appVersion: nil, locale: nil, now: Date(), on: t.app.db.sql)
            }
            _ = try await t.createStream(scheduled: false) // the fan-out job waits for the worker process
            let apns = fake.settings.apns!
            let env = try AppProcess.environment(database: t.app.deps.config.database, extra: [
                "APNS_KEY_P8": apns.keyPEM.replacingOccurrences(of: "\n", with: "\\n"), "APNS_KEY_ID": apns.keyID, "APNS_TEAM_ID": apns.teamID,
                "APNS_TOPIC": apns.topic, "APNS_BASE_URL": apns.baseURL, "PUSH_CA_FILE": fake.settings.caFile!, "PUSH_CONCURRENCY": String(window),
            ])
            func pushed() async throws -> [String] { (try await fake.log()["apns"] as? [[String: Any]] ?? []).compactMap { $0["token"] as? String } }
            let first = try AppProcess.start(["worker"], environment: env)
            let underWay = try await DeliveryResilienceTests.waitUntil(timeout: 120) { try await pushed().count >= 40 || !first.isRunning }
            #expect(underWay && first.isRunning, "the first worker never got going")
            kill(first.processIdentifier, SIGKILL)
            _ = await AppProcess.exited(first)
            #expect(Set(try await pushed()).count < members, "killed too late to prove anything")
            let second = try AppProcess.start(["worker"], environment: env)
            struct N: Decodable { let n: Int }
            func unsent() async throws -> Int {
                try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM push_deliveries WHERE status <> 'sent'").first(decoding: N.self)?.n ?? -1
            }
            // Pushes the killed worker had in flight may have arrived already; their rows go out again
            // when the lease expires (the bounded duplicates).
            let done = try await DeliveryResilienceTests.waitUntil(timeout: 300) {
                Set(try await pushed()).count == members ? try await unsent() == 0 : false
            }
            second.terminate()
            _ = await AppProcess.exited(second)
            let all = try await pushed()
            #expect(done, "\(Set(all).count) of \(members) devices got their push")
            #expect(all.count - Set(all).count <= window, "\(all.count - Set(all).count) duplicates; at most the window (\(window))")
            #expect(try await unsent() == 0)
            print("push crash test: \(all.count - Set(all).count) duplicate(s) after SIGKILL")
        }
    }
}
