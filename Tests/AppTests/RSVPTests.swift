import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 19 (RSVP part): "notify me", capacity and the waitlist.
@Suite struct RSVPTests {
    static func rsvp(_ t: TestApp, _ stream: String, _ user: String) async throws -> TestApp.Reply {
        try await t.send(.POST, "api/streams/\(stream)/rsvp", bearer: try await t.token(user))
    }

    static func create(_ t: TestApp, capacity: Int? = nil, start: Date) async throws -> String {
        var body: [String: Any] = ["creatorId": "creator", "title": "Small class", "isScheduled": true, "startTime": ISO8601.string(start)]
        if let capacity { body["capacity"] = capacity }
        let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: body)
        #expect(r.status == .created, "\(r.raw)")
        return (r.json["stream"] as? [String: Any])?["id"] as? String ?? ""
    }

    @Test func nonFollowersWhoRSVPGetTheReminderAndLiveNowButNotTheAnnouncement() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await t.seedBasics()
            try await t.importUsers([], follows: [["followerId": "m1", "followedId": "creator"]])
            let id = try await Self.create(t, start: t.start.addingTimeInterval(3600))
            try await t.drainWorker()
            #expect(await transport.messages(to: "m2@example.com").isEmpty) // not a follower: no announcement
            let r = try await Self.rsvp(t, id, "m2")
            #expect(r.status == .ok && (r.json["rsvp"] as? [String: Any])?["status"] as? String == "confirmed")
            #expect((r.json["rsvp"] as? [String: Any])?["position"] is NSNull)
            #expect(try await Self.rsvp(t, id, "m2").status == .ok) // idempotent
            #expect(try await Self.rsvp(t, id, "creator").status == .ok) // the creator always has a place
            t.setNow(t.start.addingTimeInterval(3600 - 14 * 60))
            try await t.drainWorker()
            #expect(await transport.messages(to: "m2@example.com").count == 1, "the reminder")
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: try await t.token("creator"), json: ["isLive": true]).status == .ok)
            try await t.drainWorker()
            let m2 = await transport.messages(to: "m2@example.com")
            #expect(m2.count == 2 && m2.last?.subject.contains("LIVE") == true, "\(m2.map(\.subject))")
            // Preferences still apply to RSVPs: a member who switched live-now off is skipped.
            let details = try await t.send(.GET, "api/streams/\(id)", bearer: try await t.token("m2"))
            #expect(((details.json["stream"] as? [String: Any])?["rsvps"] as? [String: Any])?["confirmed"] as? Int == 1)
            let gone = try await t.send(.DELETE, "api/streams/\(id)/rsvp", bearer: try await t.token("m2"))
            #expect(gone.json["deleted"] as? Bool == true)
            #expect(try await t.send(.DELETE, "api/streams/\(id)/rsvp", bearer: try await t.token("m2")).json["deleted"] as? Bool == false)
        }
    }

    @Test func capacityWaitlistPromotionAndTokens() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("m3"), TestApp.user("m4")])
            let id = try await Self.create(t, capacity: 2, start: t.start.addingTimeInterval(3600))
            #expect((try await Self.rsvp(t, id, "m1")).json["rsvp"] as? [String: Any] != nil)
            _ = try await Self.rsvp(t, id, "m2")
            let third = try await Self.rsvp(t, id, "m3")
            #expect((third.json["rsvp"] as? [String: Any])?["status"] as? String == "waitlisted" && (third.json["rsvp"] as? [String: Any])?["position"] as? Int == 1)
            let fourth = try await Self.rsvp(t, id, "m4")
            #expect((fourth.json["rsvp"] as? [String: Any])?["position"] as? Int == 2)
            // Only confirmed RSVPs (and the creator) may join a class with limited places.
            let waiting = try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m3"))
            #expect(waiting.status == .forbidden && waiting.errorCode == "not_registered")
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m1")).status == .ok)
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("creator")).status == .ok)
            // m1 gives the place up: m3 is in, and told so.
            #expect(try await t.send(.DELETE, "api/streams/\(id)/rsvp", bearer: try await t.token("m1")).status == .ok)
            try await t.drainWorker()
            let told = await transport.messages(to: "m3@example.com")
            #expect(told.count == 1 && told.first?.subject.contains("You're in") == true, "\(told.map(\.subject))")
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m3")).status == .ok)
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m1")).errorCode == "not_registered")
            let again = try await Self.rsvp(t, id, "m4")
            #expect((again.json["rsvp"] as? [String: Any])?["position"] as? Int == 1)
            let list = try await t.send(.GET, "api/creator/streams/\(id)/rsvps", bearer: try await t.token("creator"))
            #expect((list.json["rsvps"] as? [[String: Any]])?.map { $0["userId"] as? String } == ["m2", "m3", "m4"])
            #expect(list.json["counts"] as? [String: Int] == ["confirmed": 2, "waitlisted": 1, "capacity": 2])
            #expect(try await t.send(.GET, "api/creator/streams/\(id)/rsvps", bearer: try await t.token("m2")).status == .forbidden)
        }
    }

    @Test func fiftyParallelRSVPsNeverOverbook() async throws {
        try await TestApp.run(fileDatabase: true) { t in
            try await t.seedBasics()
            let users = (0..<50).map { TestApp.user("r\($0)") }
            try await t.importUsers(users)
            let id = try await Self.create(t, capacity: 10, start: t.start.addingTimeInterval(3600))
            var tokens: [String] = []
            for i in 0..<50 { tokens.append(try await t.token("r\(i)")) }
            let answers = try await withThrowingTaskGroup(of: (HTTPStatus, String?, Int?).self) { group in
                for token in tokens {
                    group.addTask {
                        let r = try await t.send(.POST, "api/streams/\(id)/rsvp", bearer: token)
                        let body = r.json["rsvp"] as? [String: Any]
                        return (r.status, body?["status"] as? String, body?["position"] as? Int)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0.0 == .ok }, "\(answers.map(\.0))")
            #expect(answers.filter { $0.1 == "confirmed" }.count == 10)
            #expect(Set(answers.compactMap(\.2)) == Set(1...40))
            struct N: Decodable { let n: Int }
            let confirmed = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM rsvps WHERE stream_id = \(bind: id) AND status = 'confirmed'")
                .first(decoding: N.self)?.n
            #expect(confirmed == 10)
        }
    }
}
