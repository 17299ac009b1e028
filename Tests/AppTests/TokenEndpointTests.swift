import AgoraAccessToken
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct TokenEndpointTests {
    @Test func subscriberByDefaultPublisherOnRequest() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let member = try await t.token("m1")
            let m1 = try #require(try await User.find("m1", on: t.app.db))
            // Members may publish only on an open stage (StageTests covers the other policies).
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: try await t.token("creator"), json: ["stagePolicy": "open"]).status == .ok)

            let sub = try await t.send(.GET, "api/streams/\(id)/token", bearer: member)
            #expect(sub.status == .ok)
            #expect(Set(sub.json.keys) == ["success", "token", "uid", "channelId", "appId", "expiresAt", "publishExpiresAt", "rtmToken"])
            #expect(sub.json["publishExpiresAt"] is NSNull && sub.json["rtmToken"] is NSNull)
            #expect((sub.json["uid"] as? NSNumber)?.uint32Value == m1.agoraUid32)
            #expect(sub.json["channelId"] as? String == id)
            #expect(sub.json["appId"] as? String == TestCredentials.agoraAppId)
            #expect(sub.json["expiresAt"] as? String == ISO8601.string(t.start.addingTimeInterval(3600)))
            let subToken = try AccessToken2.verify(try #require(sub.json["token"] as? String), appCertificate: TestCredentials.agoraCert)
            #expect(subToken.services == [.rtc(channel: id, uid: String(m1.agoraUid32), privileges: [1: 3600])])

            let pub = try await t.send(.GET, "api/streams/\(id)/token?role=publisher&userId=m1", bearer: member)
            #expect(pub.status == .ok)
            let pubToken = try AccessToken2.verify(try #require(pub.json["token"] as? String), appCertificate: TestCredentials.agoraCert)
            #expect(pubToken.services == [.rtc(channel: id, uid: String(m1.agoraUid32), privileges: [1: 3600, 2: 600, 3: 600, 4: 600])])

            // The same user always gets the same uid.
            let again = try await t.send(.GET, "api/streams/\(id)/token", bearer: member)
            #expect((again.json["uid"] as? NSNumber)?.uint32Value == m1.agoraUid32)
        }
    }

    /// A class-start storm: 60 distinct members (one inactive) ask at once, on a file database. Their
    /// accounts are read in groups (one query for what arrived meanwhile); each still gets a token for
    /// their own uid, and the inactive one is refused.
    @Test func parallelDistinctMembersEachGetTheirOwnUid() async throws {
        try await TestApp.run(fileDatabase: true) { t in
            try await t.seedBasics()
            let ids = (0..<60).map { "storm\($0)" }
            try await t.importUsers(ids.map { TestApp.user($0, active: $0 != "storm7") })
            let stream = try await t.createStream(scheduled: false)
            var bearers: [String: String] = [:]
            for id in ids { bearers[id] = try await t.token(id) }
            let replies = try await withThrowingTaskGroup(of: (String, TestApp.Reply).self) { group in
                for id in ids {
                    let bearer = bearers[id]!
                    group.addTask { (id, try await t.send(.GET, "api/streams/\(stream)/token", bearer: bearer)) }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            for id in ids {
                let reply = try #require(replies[id])
                if id == "storm7" {
                    #expect(reply.status == .forbidden && reply.errorCode == "user_inactive")
                    continue
                }
                let uid = try #require(try await User.find(id, on: t.app.db)).agoraUid32
                #expect(reply.status == .ok && (reply.json["uid"] as? NSNumber)?.uint32Value == uid, "\(id): \(reply.raw.prefix(200))")
                let token = try AccessToken2.verify(try #require(reply.json["token"] as? String), appCertificate: TestCredentials.agoraCert)
                #expect(token.services == [.rtc(channel: stream, uid: String(uid), privileges: [1: 3600])])
            }
        }
    }

    @Test func refusals() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("gone", active: false)])
            let id = try await t.createStream()
            let member = try await t.token("m1")
            let mismatch = try await t.send(.GET, "api/streams/\(id)/token?userId=m2", bearer: member)
            #expect(mismatch.status == .forbidden)
            let badRole = try await t.send(.GET, "api/streams/\(id)/token?role=admin", bearer: member)
            #expect(badRole.status == .badRequest)
            #expect(try await t.send(.GET, "api/streams/missing/token", bearer: member).status == .notFound)
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("ghost")).status == .notFound)
            let inactive = try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("gone"))
            #expect(inactive.status == .forbidden && inactive.errorCode == "user_inactive")
            let owner = try await t.token("creator")
            try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            let ended = try await t.send(.GET, "api/streams/\(id)/token", bearer: member)
            #expect(ended.status == .conflict && ended.errorCode == "stream_ended")
            // Stopping a stream that never went live cancels it.
            let never = try await t.createStream()
            try await t.send(.POST, "api/creator/streams/\(never)/stop", bearer: owner)
            let cancelled = try await t.send(.GET, "api/streams/\(never)/token", bearer: member)
            #expect(cancelled.status == .conflict && cancelled.errorCode == "stream_cancelled")
        }
    }

    @Test func ttlIsConfigurable() async throws {
        try await TestApp.run(adjust: { $0.agora.tokenTTLSeconds = 600 }) { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let r = try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m2"))
            let token = try AccessToken2.verify(try #require(r.json["token"] as? String), appCertificate: TestCredentials.agoraCert)
            #expect(token.expire == 600)
            #expect(r.json["expiresAt"] as? String == ISO8601.string(t.start.addingTimeInterval(600)))
        }
    }
}

@Suite struct ScheduledStreamsTests {
    @Test func rangeOrderLimitAndShape() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let day: TimeInterval = 86_400
            var ids: [String] = []
            for i in [3, 1, 2, 5, 4] { ids.append(try await t.createStream(start: t.start.addingTimeInterval(Double(i) * day), title: "S\(i)")) }
            _ = try await t.createStream("creator2", start: t.start.addingTimeInterval(2 * day))
            let member = try await t.token("m1")
            let all = try await t.send(.GET, "api/creator/creator/scheduled-streams", bearer: member)
            #expect(all.status == .ok && all.json["success"] as? Bool == true)
            let streams = try #require(all.json["streams"] as? [[String: Any]])
            #expect(streams.map { $0["title"] as? String } == ["S1", "S2", "S3", "S4", "S5"])
            let first = streams[0]
            #expect(Set(first.keys) == ["id", "title", "description", "workoutType", "thumbnail", "startTime", "endTime", "isLive", "cancelledAt", "state", "seriesId"])
            #expect(first["state"] as? String == "scheduled")
            #expect(first["description"] is NSNull && first["workoutType"] is NSNull && first["thumbnail"] is NSNull && first["endTime"] is NSNull && first["seriesId"] is NSNull)
            #expect((first["startTime"] as? String)?.hasSuffix("Z") == true)

            // Inclusive bounds.
            let s2 = ISO8601.string(t.start.addingTimeInterval(2 * day)), s4 = ISO8601.string(t.start.addingTimeInterval(4 * day))
            let ranged = try await t.send(.GET, "api/creator/creator/scheduled-streams?startDate=\(s2)&endDate=\(s4)", bearer: member)
            #expect((ranged.json["streams"] as? [[String: Any]])?.map { $0["title"] as? String } == ["S2", "S3", "S4"])
            let open = try await t.send(.GET, "api/creator/creator/scheduled-streams?startDate=\(s4)", bearer: member)
            #expect((open.json["streams"] as? [[String: Any]])?.count == 2)
            let limited = try await t.send(.GET, "api/creator/creator/scheduled-streams?limit=2", bearer: member)
            #expect((limited.json["streams"] as? [[String: Any]])?.map { $0["title"] as? String } == ["S1", "S2"])
            // A date-only end bound covers its whole day.
            let dayOnly = String(s2.prefix(10))
            let sameDay = try await t.send(.GET, "api/creator/creator/scheduled-streams?startDate=\(dayOnly)&endDate=\(dayOnly)", bearer: member)
            #expect((sameDay.json["streams"] as? [[String: Any]])?.map { $0["title"] as? String } == ["S2"])
        }
    }

    @Test(arguments: ["startDate=yesterday", "endDate=2026-13-01", "startDate=2026-03-10T00:00:00Z&endDate=2026-03-09T00:00:00Z",
                      "limit=0", "limit=1001", "limit=ten"])
    func badQueries(query: String) async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let r = try await t.send(.GET, "api/creator/creator/scheduled-streams?\(query)", bearer: try await t.token("m1"))
            #expect(r.status == .badRequest, "\(query)")
            #expect(r.errorCode == "validation_error")
        }
    }

    @Test func unknownCreator() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            #expect(try await t.send(.GET, "api/creator/nobody/scheduled-streams", bearer: try await t.token("m1")).status == .notFound)
        }
    }
}
