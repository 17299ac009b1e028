import Fluent
import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct WebhookTests {
    static let secret = "ncs-secret-for-tests"

    static func post(_ t: TestApp, _ body: [String: Any], secret: String = secret) async throws -> TestApp.Reply {
        let raw = String(decoding: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]), as: UTF8.self)
        return try await t.send(.POST, "api/webhooks/agora", raw: raw,
                                headers: ["Agora-Signature-V2": WebhookController.signature(Array(raw.utf8), secret: secret)])
    }

    /// Each viewer's events by uid % 4 — joins and leaves; goes on stage and back; drops and rejoins;
    /// becomes a broadcaster — and how many end as audience.
    static func timelines(uids: Range<Int64>, channel: String, prefix: String) -> (events: [[String: Any]], audience: Int) {
        var events: [[String: Any]] = []
        var audience = 0
        for uid in uids {
            var timeline: [(Int, Int64)] = [(105, 1)]            // joins as audience
            switch uid % 4 {
            case 0: timeline.append((106, 2))                     // leaves
            case 1: timeline += [(111, 2), (112, 3)]              // on stage, back to audience
            case 2: timeline += [(106, 2), (105, 3)]              // drops and rejoins
            default: timeline.append((111, 2))                    // becomes a broadcaster
            }
            if uid % 4 == 1 || uid % 4 == 2 { audience += 1 }
            for (type, seq) in timeline {
                events.append(event("\(prefix)-\(events.count + 1)", type, channel: channel, uid: uid, seq: seq))
            }
        }
        return (events, audience)
    }

    static func event(_ notice: String, _ type: Int, channel: String, uid: Int64, seq: Int64) -> [String: Any] {
        ["noticeId": notice, "productId": 1, "eventType": type, "notifyMs": 1_772_900_000_000,
         "payload": ["channelName": channel, "uid": uid, "platform": 7, "clientSeq": seq, "ts": 1_772_900_000]]
    }

    @Test func publishedSignatureVector() {
        let body = #"{"eventMs":1560408533119,"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f","notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}"#
        #expect(WebhookController.signature(Array(body.utf8), secret: "secret") == "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99")
    }

    @Test func signatureRequiredAndOffWithoutSecret() async throws {
        try await TestApp.run(adjust: { $0.ncsSecret = Self.secret }) { t in
            let body = Self.event("n1", 105, channel: "unknown-channel", uid: 5, seq: 1)
            let ignored = try await Self.post(t, body)
            #expect(ignored.status == .ok) // unknown channel: accepted, ignored
            let forged = try await Self.post(t, body, secret: "wrong")
            #expect(forged.status == .unauthorized)
            let unsigned = try await t.send(.POST, "api/webhooks/agora", raw: "{}")
            #expect(unsigned.status == .unauthorized)
            let junk = try await Self.post(t, ["hello": "world"])
            #expect(junk.status == .badRequest)
            let otherProduct = try await Self.post(t, ["noticeId": "x", "productId": 99, "eventType": 1])
            #expect(otherProduct.status == .ok)
        }
        try await TestApp.run { t in
            let r = try await Self.post(t, Self.event("n1", 105, channel: "c", uid: 5, seq: 1))
            #expect(r.status == .notFound && r.errorCode == "feature_disabled")
        }
    }

    /// Joins, leaves and role changes for 30 viewers, every event delivered twice (retries) and
    /// all shuffled: the count is exact and never negative.
    @Test func viewerCountUnderShuffledDuplicates() async throws {
        try await TestApp.run(adjust: { $0.ncsSecret = Self.secret }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let (events, expected) = Self.timelines(uids: 1000..<1030, channel: id, prefix: "notice")
            var deliveries = events + events
            var rng = SystemRandomNumberGenerator()
            deliveries.shuffle(using: &rng)
            for e in deliveries {
                let r = try await Self.post(t, e)
                #expect(r.status == .ok)
                #expect(try await t.stream(id).viewerCount >= 0)
            }
            #expect(try await t.stream(id).viewerCount == expected)
        }
    }

    /// The same timelines for 120 viewers, each event delivered twice, shuffled and posted 16 at a
    /// time (real parallel requests, a file database): the count moves by each applied change, and
    /// the sum is exact — and equals a recount of the members' rows.
    @Test func viewerCountUnderParallelShuffledDuplicates() async throws {
        try await TestApp.run(fileDatabase: true, adjust: { $0.ncsSecret = Self.secret }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let (events, expected) = Self.timelines(uids: 2000..<2120, channel: id, prefix: "parallel")
            var deliveries = events + events
            var rng = SystemRandomNumberGenerator()
            deliveries.shuffle(using: &rng)
            let bodies = deliveries.map { String(decoding: try! JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
            var firstDeliveries: [String: Int] = [:] // notice → deliveries answered as new
            for chunk in stride(from: 0, to: bodies.count, by: 16).map({ Array(bodies[$0..<min($0 + 16, bodies.count)]) }) {
                let replies = try await withThrowingTaskGroup(of: (String, TestApp.Reply).self) { group in
                    for raw in chunk {
                        group.addTask {
                            let notice = (try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])?["noticeId"] as? String ?? ""
                            return (notice, try await t.send(.POST, "api/webhooks/agora", raw: raw,
                                                             headers: ["Agora-Signature-V2": WebhookController.signature(Array(raw.utf8), secret: Self.secret)]))
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(replies.allSatisfy { $0.1.status == .ok }, "\(replies.map(\.1.status))")
                for (notice, reply) in replies where reply.json["duplicate"] as? Bool == false { firstDeliveries[notice, default: 0] += 1 }
            }
            // Each notice answered as new exactly once (the other delivery: a duplicate), also when
            // both deliveries were applied in the same group.
            #expect(firstDeliveries.count == events.count && firstDeliveries.values.allSatisfy { $0 == 1 })
            #expect(try await t.stream(id).viewerCount == expected)
            try await ChannelEvents.recount(id, on: t.app.db)
            #expect(try await t.stream(id).viewerCount == expected)
        }
    }

    /// One group, applied directly: a notice twice in the group and one seen before are duplicates;
    /// one member's join and leave in the same group net out; a change for a stream that does not
    /// exist fails alone (the group falls back to one transaction per change) and leaves nothing behind.
    @Test func aGroupOfViewerChangesDedupesNetsAndIsolatesAFailure() async throws {
        try await TestApp.run(adjust: { $0.ncsSecret = Self.secret }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            #expect(try await Self.post(t, Self.event("seen", 105, channel: id, uid: 9001, seq: 1)).json["duplicate"] as? Bool == false)
            func change(_ notice: String, _ type: ChannelEventType, stream: String = id, uid: Int64, seq: Int64) -> ChannelEvents.ViewerChange {
                .init(notice: notice, record: .init(stream: stream, uid: uid, type: type, role: type.roleAfter!, clientSeq: seq, at: t.start))
            }
            let check = BoundedCache<String, Date>(limit: 10)
            let group = [
                change("seen", .audienceJoined, uid: 9001, seq: 1),          // seen before
                change("a", .audienceJoined, uid: 9002, seq: 1),
                change("a", .audienceJoined, uid: 9002, seq: 1),             // the same notice twice
                change("b-leave", .audienceLeft, uid: 9003, seq: 2),         // leave before its join, same group
                change("b-join", .audienceJoined, uid: 9003, seq: 1),
                change("c", .audienceJoined, uid: 9004, seq: 1),
            ]
            let results = await ChannelEvents.applyViewers(group, on: t.app.db, writer: t.app.deps.sqliteWriter, viewersCheck: check, clock: t.app.deps.clock)
            #expect(results.map { (try? $0.get()) ?? nil } == [false, true, false, true, true, true])
            #expect(try await t.stream(id).viewerCount == 3, "9001, 9002, 9004")
            let withBad = [change("d", .audienceJoined, uid: 9005, seq: 1), change("bad", .audienceJoined, stream: "no-such-stream", uid: 9006, seq: 1),
                           change("e", .audienceLeft, uid: 9004, seq: 2)]
            let mixed = await ChannelEvents.applyViewers(withBad, on: t.app.db, writer: t.app.deps.sqliteWriter, viewersCheck: check, clock: t.app.deps.clock)
            #expect((try? mixed[0].get()) == true && (try? mixed[2].get()) == true)
            guard case .failure = mixed[1] else { Issue.record("a change for a missing stream must fail"); return }
            #expect(try await t.stream(id).viewerCount == 3, "9001, 9002, 9005")
            struct N: Decodable { let n: Int }
            let orphan = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_notices WHERE notice_id = 'bad'").first(decoding: N.self)?.n
            #expect(orphan == 0, "the failed change's notice is not kept: Agora's retry is applied")
            // Both of 9003's changes are in the event log; its row holds the newer one (the leave).
            struct M: Decodable { let role: String; let client_seq: Int64 }
            let logged = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM attendance_events WHERE uid = 9003").first(decoding: N.self)?.n
            let member = try await t.app.db.sql.raw("SELECT role, client_seq FROM channel_members WHERE uid = 9003").first(decoding: M.self)
            #expect(logged == 2 && member?.role == ChannelRole.none.rawValue && member?.client_seq == 2)
            if t.app.db.sql.dialect.name == "sqlite" {
                let kept = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM viewer_changes").first(decoding: N.self)?.n
                #expect(kept == 0, "the inbox the group is inserted through never keeps a row")
            }
        }
    }

    @Test func hostAwayLongerThanTheGracePeriodEndsTheStream() async throws {
        try await TestApp.run(adjust: { $0.ncsSecret = Self.secret }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let host = try await User.find("creator", on: t.app.db)!.agoraUid
            try await Self.post(t, Self.event("h1", 103, channel: id, uid: host, seq: 1))
            try await Self.post(t, Self.event("h2", 104, channel: id, uid: host, seq: 2))
            t.setNow(t.start.addingTimeInterval(240))
            try await t.drainWorker()
            #expect(try await t.stream(id).isLive == true)
            // Back within the grace period: nothing ends.
            try await Self.post(t, Self.event("h3", 103, channel: id, uid: host, seq: 3))
            t.setNow(t.start.addingTimeInterval(900))
            try await t.drainWorker()
            #expect(try await t.stream(id).isLive == true)
            // Gone for good.
            try await Self.post(t, Self.event("h4", 104, channel: id, uid: host, seq: 4))
            t.setNow(t.start.addingTimeInterval(900 + 301))
            try await t.drainWorker()
            let ended = try await t.stream(id)
            #expect(ended.isLive == false && ended.endTime == t.start.addingTimeInterval(900 + 301))

            // Channel destroyed ends a live stream at once.
            let other = try await t.createStream(scheduled: false)
            try await Self.post(t, ["noticeId": "d1", "productId": 1, "eventType": 102, "payload": ["channelName": other, "ts": 1, "lastUid": 5]])
            #expect(try await t.stream(other).isLive == false)
        }
    }
}
