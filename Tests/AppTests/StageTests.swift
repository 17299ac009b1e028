import AgoraAccessToken
import Fluent
import OracleSupport
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 18: who may be on stage, decided by the server at the token and renew endpoints.
@Suite struct StageTests {
    static func token(_ t: TestApp, _ stream: String, _ user: String, role: String = "publisher") async throws -> TestApp.Reply {
        try await t.send(.GET, "api/streams/\(stream)/token?role=\(role)", bearer: try await t.token(user))
    }

    static func renew(_ t: TestApp, _ stream: String, _ user: String, role: String = "publisher") async throws -> TestApp.Reply {
        try await t.send(.POST, "api/streams/\(stream)/token/renew", bearer: try await t.token(user), json: ["role": role])
    }

    /// The privileges inside a token (our parser; the oracle test below checks it against agoraiotools).
    static func privileges(_ token: String) throws -> [UInt16: UInt32] {
        let parsed = try AccessToken2.parse(token, appCertificate: TestCredentials.agoraCert)
        #expect(parsed.signatureValid == true)
        guard case .rtc(_, _, let privileges)? = parsed.token.services.first else { return [:] }
        return privileges
    }

    @Test func stageMatrixAtTheTokenAndRenewEndpoints() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("m3"), TestApp.user("m4"), TestApp.user("m5")])
            let owner = try await t.token("creator")
            let id = try await t.createStream(scheduled: false)
            // host_only (the default): the creator publishes, members watch.
            #expect(try await Self.token(t, id, "creator").status == .ok)
            let refused = try await Self.token(t, id, "m1")
            #expect(refused.status == .forbidden && refused.errorCode == "not_on_stage")
            #expect(try await Self.token(t, id, "m1", role: "subscriber").status == .ok)
            let details = try await t.send(.GET, "api/streams/\(id)", bearer: owner)
            #expect((details.json["stream"] as? [String: Any])?["stagePolicy"] as? String == "host_only")
            // Raising a hand needs the invite policy.
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/requests", bearer: try await t.token("m1")).errorCode == "stage_closed")
            // invite: hands, invitations, removal.
            let policy = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["stagePolicy": "invite"])
            #expect(policy.status == .ok, "\(policy.raw)")
            let hand = try await t.send(.POST, "api/streams/\(id)/stage/requests", bearer: try await t.token("m1"))
            #expect(hand.json["status"] as? String == "requested")
            #expect(try await t.send(.GET, "api/streams/\(id)/stage", bearer: try await t.token("m1")).status == .forbidden)
            let queue = try await t.send(.GET, "api/streams/\(id)/stage", bearer: owner)
            #expect((queue.json["requests"] as? [[String: Any]])?.map { $0["userId"] as? String } == ["m1"])
            #expect(try await Self.token(t, id, "m1").errorCode == "not_on_stage")
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: owner, json: ["userId": "m1"]).status == .ok)
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: owner, json: ["userId": "m2", "minutes": 10]).status == .ok)
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: try await t.token("m1"), json: ["userId": "m3"]).status == .forbidden)
            let onStage = try await t.send(.GET, "api/streams/\(id)/stage", bearer: owner)
            #expect(Set((onStage.json["onStage"] as? [[String: Any]])?.compactMap { $0["userId"] as? String } ?? []) == ["m1", "m2"])
            // On stage until removed: publish privileges for 10 minutes at a time (renewal re-checks).
            let m1 = try await Self.token(t, id, "m1")
            #expect(m1.status == .ok && m1.json["publishExpiresAt"] as? String == ISO8601.string(t.start.addingTimeInterval(600)))
            #expect(try Self.privileges(m1.json["token"] as! String) == [1: 3600, 2: 600, 3: 600, 4: 600])
            // An invitation of 10 minutes: the publish privileges end with it, the join privilege does not.
            let m2 = try await Self.token(t, id, "m2")
            let p2 = try Self.privileges(m2.json["token"] as! String)
            #expect(p2[1] == 3600 && p2[2] == 600 && p2[3] == 600 && p2[4] == 600, "\(p2)")
            #expect(m2.json["publishExpiresAt"] as? String == ISO8601.string(t.start.addingTimeInterval(600)))
            // Blocks and mutes keep precedence over the stage.
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/moderation/mute", bearer: owner, json: ["userId": "m1"]).status == .ok)
            #expect(try await Self.token(t, id, "m1").errorCode == "muted")
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/moderation/unmute", bearer: owner, json: ["userId": "m1"]).status == .ok)
            // Removal: no publisher token, and no renewal either (LiveKit #2804).
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/remove", bearer: owner, json: ["userId": "m1"]).status == .ok)
            #expect(try await Self.token(t, id, "m1").errorCode == "not_on_stage")
            #expect(try await Self.renew(t, id, "m1").errorCode == "not_on_stage")
            #expect(try await Self.renew(t, id, "m1", role: "subscriber").status == .ok)
            // The invitation ends: the renewal is refused too.
            t.setNow(t.start.addingTimeInterval(601))
            #expect(try await Self.renew(t, id, "m2").errorCode == "not_on_stage")
            // Blocked: no token of any kind, renewal included.
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/moderation/block", bearer: owner, json: ["userId": "m4"]).status == .ok)
            #expect(try await Self.renew(t, id, "m4", role: "subscriber").status == .forbidden)
            // open: every eligible member publishes.
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["stagePolicy": "open"]).status == .ok)
            #expect(try await Self.token(t, id, "m5").status == .ok)
            #expect(try await Self.renew(t, id, "m5").status == .ok)
            #expect(try await Self.token(t, id, "m4").status == .forbidden) // still blocked
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["stagePolicy": "everyone"]).status == .badRequest)
            // Once ended, nothing is renewed.
            _ = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            #expect(try await Self.renew(t, id, "m5", role: "subscriber").errorCode == "stream_ended")
        }
    }

    @Test func membersJoinAScheduledStreamOnlyFromTheEarlyJoinWindow() async throws {
        try await TestApp.run(adjust: { $0.agora.earlyJoinSeconds = 900 }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: true, start: t.start.addingTimeInterval(3600))
            let early = try await Self.token(t, id, "m1", role: "subscriber")
            #expect(early.status == .forbidden && early.errorCode == "too_early")
            #expect(try await Self.token(t, id, "creator").status == .ok) // the creator's green room
            t.setNow(t.start.addingTimeInterval(3600 - 15 * 60))
            #expect(try await Self.token(t, id, "m1", role: "subscriber").status == .ok)
            #expect(try await Self.token(t, id, "m1").errorCode == "not_on_stage")
        }
        try await TestApp.run(adjust: { $0.agora.earlyJoinSeconds = 0; $0.agora.rtmEnabled = true }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let r = try await Self.token(t, id, "m1", role: "subscriber")
            let rtm = try #require(r.json["rtmToken"] as? String)
            let parsed = try AccessToken2.parse(rtm, appCertificate: TestCredentials.agoraCert)
            #expect(parsed.signatureValid == true)
            guard case .rtm(let user, let privileges)? = parsed.token.services.first else { Issue.record("not an RTM token"); return }
            #expect(user == String(r.json["uid"] as? Int ?? -1) && privileges == [1: 3600])
            #expect(try Self.privileges(r.json["token"] as! String).keys.sorted() == [1]) // subscribers: join only
        }
    }
}

@Suite struct StageKickingTests {
    @Test func removalAsksAgoraToDropThePublishPrivileges() async throws {
        let fake = try await FakeAgora()
        defer { Task { await fake.shutdown() } }
        try await TestApp.run(adjust: CloudRecordingTests.configure(fake)) { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            let id = try await t.createStream(scheduled: false)
            _ = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["stagePolicy": "invite"])
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: owner, json: ["userId": "m1"]).status == .ok)
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/remove", bearer: owner, json: ["userId": "m1"]).status == .ok)
            try await t.drainWorker(until: { !fake.rules.isEmpty })
            let m1 = try #require(try await User.find("m1", on: t.app.db))
            let rule = try #require(fake.rules.first)
            #expect(rule.value["cname"] as? String == id && rule.value["uid"] as? Int == Int(m1.agoraUid))
            #expect(rule.value["privileges"] as? [String] == ["publish_audio", "publish_video"] && rule.value["time_in_seconds"] as? Int == 3600)
            // Invited again: the rule goes, so the new publisher token works in the channel.
            #expect(try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: owner, json: ["userId": "m1"]).status == .ok)
            try await t.drainWorker(until: { fake.rules.isEmpty })
            #expect(fake.rules.isEmpty && fake.problems.isEmpty, "\(fake.problems)")
        }
    }
}

/// The same tokens read by agoraiotools (an independent parser and signature check).
@Suite(.enabled(if: ZoneOracle.available, "needs the Python oracles (scripts/test)"))
struct StageTokenOracleTests {
    @Test func invitedPublishPrivilegesAndRTMTokensReadByAgoraiotools() async throws {
        let oracle = try JSONLinesOracle(script: "scripts/oracles/agora_oracle.py")
        try await TestApp.run(adjust: { $0.agora.rtmEnabled = true }) { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            let id = try await t.createStream(scheduled: false)
            _ = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["stagePolicy": "invite"])
            _ = try await t.send(.POST, "api/streams/\(id)/stage/invite", bearer: owner, json: ["userId": "m2", "minutes": 7])
            let invited = try await StageTests.token(t, id, "m2")
            let parsed = try oracle.call(["op": "parse", "token": invited.json["token"] as! String, "appCertificate": TestCredentials.agoraCert])
            #expect(parsed["valid"] as? Bool == true)
            let services = parsed["services"] as? [[String: Any]] ?? []
            #expect((services.first?["privileges"] as? [String: Int]) == ["1": 3600, "2": 420, "3": 420, "4": 420])
            let rtm = try oracle.call(["op": "parse", "token": invited.json["rtmToken"] as! String, "appCertificate": TestCredentials.agoraCert])
            #expect(rtm["valid"] as? Bool == true)
            let rtmService = (rtm["services"] as? [[String: Any]])?.first
            #expect(rtmService?["type"] as? Int == 2 && rtmService?["userId"] as? String == String(invited.json["uid"] as? Int ?? -1))
            #expect((rtmService?["privileges"] as? [String: Int]) == ["1": 3600])
            let watcher = try await StageTests.token(t, id, "m1", role: "subscriber")
            let w = try oracle.call(["op": "parse", "token": watcher.json["token"] as! String, "appCertificate": TestCredentials.agoraCert])
            #expect(((w["services"] as? [[String: Any]])?.first?["privileges"] as? [String: Int]) == ["1": 3600])
        }
    }
}
