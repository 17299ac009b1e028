import AgoraAccessToken
import Fluent
import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct CreateStreamTests {
    @Test func scheduledStreamHasTheExactShapeAndAPublisherToken() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: [
                "creatorId": "creator", "title": "  Leg day 🏋️ ", "description": "Bring water", "workoutType": "Strength",
                "thumbnail": "https://cdn.example.com/t.jpg", "startTime": "2026-03-08T09:30:00.250+05:30", "isScheduled": true,
            ])
            #expect(r.status == .created)
            #expect(r.json["success"] as? Bool == true)
            #expect(r.json["message"] is String)
            let stream = try #require(r.json["stream"] as? [String: Any])
            #expect(Set(stream.keys) == ["id", "title", "agoraChannelId", "agoraToken", "agoraUid", "startTime", "isLive"])
            #expect(stream["title"] as? String == "Leg day 🏋️")
            #expect(stream["startTime"] as? String == "2026-03-08T04:00:00.250Z")
            #expect(stream["isLive"] as? Bool == false)
            let id = try #require(stream["id"] as? String)
            #expect(stream["agoraChannelId"] as? String == id)
            let creator = try #require(try await User.find("creator", on: t.app.db))
            #expect((stream["agoraUid"] as? NSNumber)?.uint32Value == creator.agoraUid32)
            let token = try AccessToken2.verify(try #require(stream["agoraToken"] as? String), appCertificate: TestCredentials.agoraCert)
            #expect(token.appId == TestCredentials.agoraAppId)
            #expect(token.issueTs == UInt32(t.start.timeIntervalSince1970))
            #expect(token.expire == 3600)
            #expect(token.services == [.rtc(channel: id, uid: String(creator.agoraUid32), privileges: [1: 3600, 2: 3600, 3: 3600, 4: 3600])])

            let saved = try #require(try await LiveStream.find(id, on: t.app.db))
            #expect(saved.details == "Bring water" && saved.workoutType == "Strength" && saved.viewerCount == 0)
            #expect(saved.reminderSent == false && saved.endTime == nil && saved.replayUrl == nil)
        }
    }

    @Test func goLiveNowStartsNowWhateverTheClientSent() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"),
                                     json: ["creatorId": "creator", "title": "Now", "isScheduled": false, "startTime": "2020-01-01T00:00:00Z"])
            #expect(r.status == .created)
            let stream = try #require(r.json["stream"] as? [String: Any])
            #expect(stream["isLive"] as? Bool == true)
            #expect(stream["startTime"] as? String == ISO8601.string(t.start))
        }
    }

    @Test func whoMayCreate() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("sleepy", role: "creator", active: false)])
            func create(as caller: String, creatorId: String) async throws -> TestApp.Reply {
                try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token(caller),
                                 json: ["creatorId": creatorId, "title": "x", "isScheduled": false])
            }
            let other = try await create(as: "creator2", creatorId: "creator")
            #expect(other.status == .forbidden && other.errorCode == "forbidden")
            let member = try await create(as: "m1", creatorId: "m1")
            #expect(member.status == .forbidden && member.errorCode == "not_a_creator")
            let inactive = try await create(as: "sleepy", creatorId: "sleepy")
            #expect(inactive.status == .forbidden && inactive.errorCode == "creator_inactive")
            let unknown = try await create(as: "ghost", creatorId: "ghost")
            #expect(unknown.status == .notFound)
            #expect(try await LiveStream.query(on: t.app.db).count() == 0)
        }
    }

    @Test(arguments: [
        (#"{"title": ""}"#, "title"),
        (#"{"title": "   "}"#, "title"),
        (#"{"title": "\#(String(repeating: "a", count: 201))"}"#, "title"),
        (#"{"description": "\#(String(repeating: "d", count: 5001))"}"#, "description"),
        (#"{"workoutType": "\#(String(repeating: "w", count: 61))"}"#, "workoutType"),
        (#"{"thumbnail": "http://cdn.example.com/x.jpg"}"#, "thumbnail"),
        (#"{"thumbnail": "javascript:alert(1)"}"#, "thumbnail"),
        (#"{"thumbnail": "https://cdn.example.com/\#(String(repeating: "x", count: 2048))"}"#, "thumbnail"),
        (#"{"startTime": "2026-03-08T10:00:00"}"#, "startTime"),
        (#"{"startTime": "tomorrow"}"#, "startTime"),
        (#"{"startTime": "2026-03-07T16:13:19Z"}"#, "startTime"),
        (#"{"startTime": null}"#, "startTime"),
    ])
    func validation(overrideJSON: String, field: String) async throws {
        let override = try JSONSerialization.jsonObject(with: Data(overrideJSON.utf8)) as! [String: Any]
        try await TestApp.run { t in
            try await t.seedBasics()
            var body: [String: Any] = ["creatorId": "creator", "title": "ok", "isScheduled": true, "startTime": "2026-03-08T10:00:00Z"]
            body.merge(override) { $1 }
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: body)
            #expect(r.status == .badRequest, "\(override) → \(r.status)")
            #expect(r.errorCode == "validation_error")
            #expect(((r.json["error"] as? [String: Any])?["message"] as? String)?.contains(field) == true, "\(r.raw)")
            #expect(try await LiveStream.query(on: t.app.db).count() == 0)
        }
    }

    @Test func malformedOrMistypedBodies() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let token = try await t.token("creator")
            let bad = try await t.send(.POST, "api/creator/streams/create", bearer: token, raw: "{not json")
            #expect(bad.status == .badRequest && bad.errorCode == "invalid_body")
            let missing = try await t.send(.POST, "api/creator/streams/create", bearer: token, json: ["creatorId": "creator", "title": "x"])
            #expect(missing.status == .badRequest && missing.errorCode == "invalid_body")
            let wrongType = try await t.send(.POST, "api/creator/streams/create", bearer: token, json: ["creatorId": "creator", "title": 5, "isScheduled": true])
            #expect(wrongType.status == .badRequest)
        }
    }

    @Test func startTimesWithAndWithoutFractionalSecondsAndOffsets() async throws {
        #expect(ISO8601.parse("2026-03-08T10:00:00Z") == Date(timeIntervalSince1970: 1_772_964_000))
        #expect(ISO8601.parse("2026-03-08T10:00:00.5Z") == Date(timeIntervalSince1970: 1_772_964_000.5))
        #expect(ISO8601.parse("2026-03-08T15:45:00+05:45") == Date(timeIntervalSince1970: 1_772_964_000))
        #expect(ISO8601.parse("2026-03-08T05:00:00.000-05:00") == Date(timeIntervalSince1970: 1_772_964_000))
        #expect(ISO8601.parse("2026-03-08T10:00:00") == nil)
        #expect(ISO8601.parse("2026-03-08") == nil)
        #expect(ISO8601.string(Date(timeIntervalSince1970: 1_772_964_000)) == "2026-03-08T10:00:00.000Z")
    }

    /// Records hook calls, and whether they ran inside the write transaction.
    actor RecordingEvents: StreamEvents {
        var calls: [String] = []
        nonisolated func streamScheduled(_ stream: LiveStream, on db: any Database) async throws { await record("scheduled", db) }
        nonisolated func streamWentLive(_ stream: LiveStream, on db: any Database) async throws { await record("live", db) }
        nonisolated func streamEnded(_ stream: LiveStream, on db: any Database) async throws { await record("ended", db) }
        func record(_ event: String, _ db: any Database) { calls.append(db.inTransaction ? event : event + "(outside transaction)") }
    }

    @Test func lifecycleHooksFireInsideTheWriteTransaction() async throws {
        let events = RecordingEvents()
        try await TestApp.run(streamEvents: events) { t in
            try await t.seedBasics()
            let scheduled = try await t.createStream()
            _ = try await t.createStream(scheduled: false)
            let token = try await t.token("creator")
            try await t.send(.PATCH, "api/creator/streams/\(scheduled)/status", bearer: token, json: ["isLive": true])
            try await t.send(.PATCH, "api/creator/streams/\(scheduled)/status", bearer: token, json: ["isLive": true])
            try await t.send(.POST, "api/creator/streams/\(scheduled)/stop", bearer: token)
            try await t.send(.POST, "api/creator/streams/\(scheduled)/stop", bearer: token)
        }
        #expect(await events.calls == ["scheduled", "live", "live", "ended"])
    }
}

@Suite struct StreamLifecycleTests {
    @Test func stopIsOwnerOnlyAndIdempotent() async throws {
        try await TestApp.run(adjust: { $0.replayOrigins = ["https://cdn.example.com/"] }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: try await t.token("creator2")).status == .forbidden)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: try await t.token("m1")).status == .forbidden)
            #expect(try await t.send(.POST, "api/creator/streams/nope/stop", bearer: owner).errorCode == "stream_not_found")
            let mismatch = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: ["streamId": "other"])
            #expect(mismatch.status == .badRequest)
            let insecure = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: ["replayUrl": "http://cdn.example.com/r.mp4"])
            #expect(insecure.status == .badRequest && insecure.errorCode == "validation_error")
            #expect(try await LiveStream.find(id, on: t.app.db)?.isLive == true)

            t.setNow(t.start.addingTimeInterval(1800))
            let first = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: ["streamId": id, "replayUrl": "https://cdn.example.com/r.mp4"])
            #expect(first.status == .ok && first.json["success"] as? Bool == true && first.json["message"] is String)
            t.setNow(t.start.addingTimeInterval(3000))
            let second = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            #expect(second.status == .ok)
            let saved = try #require(try await LiveStream.find(id, on: t.app.db))
            #expect(saved.isLive == false)
            #expect(saved.endTime == t.start.addingTimeInterval(1800))
            #expect(saved.replayUrl == "https://cdn.example.com/r.mp4")
        }
    }

    @Test func statusUpdates() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let owner = try await t.token("creator")
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: try await t.token("creator2"), json: ["isLive": true]).status == .forbidden)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": "yes"]).status == .badRequest)
            let live = try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            #expect(live.status == .ok && live.json["message"] is String)
            #expect(try await LiveStream.find(id, on: t.app.db)?.isLive == true)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": false]).status == .ok)
            #expect(try await LiveStream.find(id, on: t.app.db)?.isLive == false)
            try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            let ended = try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            #expect(ended.status == .conflict && ended.errorCode == "stream_ended")
        }
    }
}
