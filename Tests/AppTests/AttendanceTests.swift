import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 18: attendance and analytics from Agora's channel events, against a hand-computed fixture.
@Suite struct AttendanceTests {
    /// Fixture (seconds after the stream went live at T0; the stream is stopped at T0+1800):
    /// - m1: join 0, leave 600, join 900, leave 1200 → 900 s (15.0 min)
    /// - m2: join 300, on stage 400, back to audience 500, leave lost → closed by the end: 1500 s (25.0 min)
    /// - uid 777 (no user): join 60, leave 120 → 60 s (1.0 min)
    /// - the creator joins as broadcaster at 0: never an attendee
    static func events(m1: Int64, m2: Int64, host: Int64, channel: String, t0: Int) -> [[String: Any]] {
        func e(_ type: Int, _ uid: Int64, _ seq: Int64, _ at: Int) -> [String: Any] {
            ["productId": 1, "eventType": type, "notifyMs": (t0 + at) * 1000,
             "payload": ["channelName": channel, "uid": uid, "platform": 7, "clientSeq": seq, "ts": t0 + at]]
        }
        return [
            e(103, host, 1, 0),
            e(105, m1, 1, 0), e(106, m1, 2, 600), e(105, m1, 3, 900), e(106, m1, 4, 1200),
            e(105, m2, 1, 300), e(111, m2, 2, 400), e(112, m2, 3, 500),
            e(105, 777, 1, 60), e(106, 777, 2, 120),
        ]
    }

    @Test func shuffledDuplicatedEventsGiveExactAttendanceAndAnalytics() async throws {
        try await TestApp.run(adjust: { $0.ncsSecret = WebhookTests.secret }) { t in
            try await t.seedBasics()
            try await t.importUsers([], follows: [["followerId": "m1", "followedId": "creator"], ["followerId": "m2", "followedId": "creator"]])
            let id = try await t.createStream(scheduled: false)
            try await t.drainWorker() // the live-now emails, sent at T0
            let uid = { (u: String) async throws -> Int64 in try #require(try await User.find(u, on: t.app.db)).agoraUid }
            let t0 = Int(t.start.timeIntervalSince1970)
            var notices = Self.events(m1: try await uid("m1"), m2: try await uid("m2"), host: try await uid("creator"), channel: id, t0: t0)
            notices += notices // every event twice (Agora retries), under other notice ids
            notices.shuffle()
            for (i, var n) in notices.enumerated() {
                n["noticeId"] = "att-\(i)"
                #expect(try await WebhookTests.post(t, n).status == .ok)
            }
            let owner = try await t.token("creator")
            t.setNow(t.start.addingTimeInterval(1800))
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: try await t.token("creator")).status == .ok)

            let page = try await t.send(.GET, "api/creator/streams/\(id)/attendance", bearer: try await t.token("creator"))
            #expect(page.status == .ok, "\(page.raw)")
            let attendees = try #require(page.json["attendees"] as? [[String: Any]])
            var byUser: [String: [String: Any]] = [:]
            for a in attendees { byUser[(a["userId"] as? String) ?? "unknown"] = a }
            #expect(attendees.count == 3 && page.json["nextCursor"] is NSNull)
            #expect(byUser["m1"]?["minutesWatched"] as? Double == 15.0 && byUser["m1"]?["onStage"] as? Bool == false)
            #expect(byUser["m1"]?["firstJoinedAt"] as? String == ISO8601.string(t.start))
            #expect(byUser["m1"]?["name"] as? String == "Name m1")
            #expect(byUser["m2"]?["minutesWatched"] as? Double == 25.0 && byUser["m2"]?["onStage"] as? Bool == true)
            #expect(byUser["m2"]?["firstJoinedAt"] as? String == ISO8601.string(t.start.addingTimeInterval(300)))
            #expect(byUser["unknown"]?["minutesWatched"] as? Double == 1.0 && byUser["unknown"]?["name"] is NSNull)
            // Pages of one, in uid order, cover the same three.
            var seen: [String] = []
            var cursor: String?
            repeat {
                let r = try await t.send(.GET, "api/creator/streams/\(id)/attendance?limit=1" + (cursor.map { "&cursor=\($0)" } ?? ""), bearer: owner)
                seen += (r.json["attendees"] as? [[String: Any]] ?? []).map { ($0["userId"] as? String) ?? "unknown" }
                cursor = r.json["nextCursor"] as? String
            } while cursor != nil
            #expect(Set(seen) == ["m1", "m2", "unknown"] && seen.count == 3)

            let a = try await t.send(.GET, "api/creator/streams/\(id)/analytics", bearer: owner)
            #expect(a.status == .ok, "\(a.raw)")
            #expect(a.json["uniqueViewers"] as? Int == 3 && a.json["peakViewers"] as? Int == 2)
            #expect(a.json["totalWatchMinutes"] as? Double == 41.0 && a.json["medianWatchMinutes"] as? Double == 15.0)
            #expect(a.json["averageViewers"] as? Double == 1.37) // 2460 s watched over 1800 s
            let series = try #require(a.json["viewersPerMinute"] as? [[String: Any]])
            // T0 is 20 s past a minute: 31 buckets from T0−20 s; the bucket holding T0+60…T0+100 has two.
            #expect(series.count == 31)
            #expect(series.map { $0["viewers"] as? Int ?? -1 }.prefix(4) == [1, 2, 2, 1])
            let conversion = try #require(a.json["conversion"] as? [String: [String: Int]])
            #expect(conversion["live_now"] == ["emailed": 2, "joinedWithin30Minutes": 2])
            #expect(conversion["reminder"] == ["emailed": 0, "joinedWithin30Minutes": 0])
            // Members see what they attended.
            let history = try await t.send(.GET, "api/me/history", bearer: try await t.token("m1"))
            let classes = try #require(history.json["classes"] as? [[String: Any]])
            #expect(classes.count == 1 && classes.first?["streamId"] as? String == id && classes.first?["minutesWatched"] as? Double == 15.0)
            #expect(classes.first?["state"] as? String == "ended")
            // Only the creator sees attendance.
            #expect(try await t.send(.GET, "api/creator/streams/\(id)/attendance", bearer: try await t.token("m1")).status == .forbidden)
            #expect(try await t.send(.GET, "api/creator/streams/\(id)/analytics", bearer: try await t.token("creator2")).status == .forbidden)
        }
    }

    /// The per-stream read is an index range scan (the unique key), never a scan of every event.
    @Test func attendanceReadsUseTheStreamIndex() async throws {
        try await TestApp.run { t in
            guard TestApp.postgresURL == nil else { return }
            struct Plan: Decodable { let detail: String }
            let plan = try await t.app.db.sql.raw("""
                EXPLAIN QUERY PLAN SELECT uid, user_id, event, role, client_seq, at FROM attendance_events
                WHERE stream_id = 'x' ORDER BY uid, client_seq
                """).all(decoding: Plan.self).map(\.detail).joined(separator: " | ")
            #expect(plan.contains("USING INDEX") && !plan.contains("TEMP B-TREE"), "\(plan)")
        }
    }

    @Test func sessionRulesInIsolation() {
        let t0 = Date(timeIntervalSince1970: 1_000_000)
        func row(_ event: Attendance.Event, _ seq: Int64, _ at: TimeInterval, role: ChannelRole = .audience) -> Attendance.Row {
            .init(uid: 1, user_id: "u", event: event.rawValue, role: role.rawValue, client_seq: seq, at: t0.addingTimeInterval(at))
        }
        // A join lost: the role change opens the session; a second join while present changes nothing.
        let v = Attendance.viewer(uid: 1, userID: "u", events: [row(.leave, 4, 500, role: .none), row(.role, 2, 100, role: .broadcaster),
                                                               row(.join, 3, 200)], end: t0.addingTimeInterval(900))
        #expect(v.sessions == [t0.addingTimeInterval(100)...t0.addingTimeInterval(500)] && v.onStage)
    }
}
