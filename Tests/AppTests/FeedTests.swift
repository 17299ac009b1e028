import Fluent
import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct FeedTests {
    @Test func streamDetailsAndLiveList() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            var ids: [String] = []
            for (i, viewers) in [3, 10, 10, 0, 7].enumerated() {
                let id = try await t.createStream(i % 2 == 0 ? "creator" : "creator2", scheduled: false, title: "Live \(i)")
                let s = try await t.stream(id); s.viewerCount = viewers; try await s.save(on: t.app.db)
                ids.append(id)
            }
            _ = try await t.createStream() // scheduled: not in the live list
            let member = try await t.token("m1")
            let one = try await t.send(.GET, "api/streams/\(ids[1])", bearer: member)
            #expect(one.status == .ok)
            let d = try #require(one.json["stream"] as? [String: Any])
            #expect(d["viewerCount"] as? Int == 10 && d["isLive"] as? Bool == true && d["replayUrl"] is NSNull)
            #expect((d["creator"] as? [String: Any])?["name"] as? String == "Name creator2")
            #expect(try await t.send(.GET, "api/streams/nope", bearer: member).status == .notFound)
            #expect(try await t.send(.GET, "api/streams/\(ids[1])").status == .unauthorized)

            var seen: [String] = []
            var cursor: String?
            repeat {
                let path = "api/streams/live?limit=2" + (cursor.map { "&cursor=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)" } ?? "")
                let page = try await t.send(.GET, path, bearer: member)
                #expect(page.status == .ok)
                seen += (page.json["streams"] as? [[String: Any]] ?? []).compactMap { $0["title"] as? String }
                cursor = page.json["nextCursor"] as? String
            } while cursor != nil
            let tens = [ids[1], ids[2]].sorted().map { id in "Live \(ids.firstIndex(of: id)!)" }
            #expect(seen == tens + ["Live 4", "Live 0", "Live 3"])
            #expect(try await t.send(.GET, "api/streams/live?cursor=%%%", bearer: member).status == .badRequest)
        }
    }

    @Test func upcomingForMeInMyZone() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([], follows: [["followerId": "m2", "followedId": "creator"]],
                                    subscriptions: [["memberId": "m2", "creatorId": "creator2", "status": "active"]])
            let soon = try await t.createStream(start: t.start.addingTimeInterval(86_400), title: "Soon")
            _ = try await t.createStream("creator2", start: t.start.addingTimeInterval(2 * 86_400), title: "Other")
            _ = try await t.createStream(start: t.start.addingTimeInterval(20 * 86_400), title: "Too far")
            let cancelled = try await t.createStream(start: t.start.addingTimeInterval(3600), title: "Cancelled")
            try await t.send(.POST, "api/creator/streams/\(cancelled)/cancel", bearer: try await t.token("creator"))
            let r = try await t.send(.GET, "api/me/upcoming", bearer: try await t.token("m2"))
            let streams = try #require(r.json["streams"] as? [[String: Any]])
            #expect(streams.map { $0["title"] as? String } == ["Soon", "Other"])
            let start = try await t.stream(soon).startTime
            #expect(streams.first?["startTimeLocal"] as? String == TimeFormatting.format(start, zoneID: "Asia/Kolkata"))
            #expect((try await t.send(.GET, "api/me/upcoming", bearer: try await t.token("m1"))).json["streams"] as? [Any] != nil)
        }
    }

    @Test func publicScheduleFeed() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let a = try await t.createStream(start: t.start.addingTimeInterval(7200), title: "Yoga, flow; breathe")
            _ = try await t.createStream(start: t.start.addingTimeInterval(9000), title: "Second")
            let feed = try await t.send(.GET, "api/creator/creator/schedule.ics") // no token: public on purpose
            #expect(feed.status == .ok)
            #expect(feed.headers.first(name: .contentType)?.hasPrefix("text/calendar") == true)
            #expect(feed.raw.contains("BEGIN:VCALENDAR\r\n") && feed.raw.components(separatedBy: "BEGIN:VEVENT").count == 3)
            #expect(feed.raw.contains("UID:\(a)@api.fit.example.com\r\n") && feed.raw.contains("SUMMARY:Yoga\\, flow\\; breathe\r\n"))
            #expect(!feed.raw.contains("@example.com>") && !feed.raw.contains("m1@")) // no member data
            for line in feed.raw.components(separatedBy: "\r\n") { #expect(line.utf8.count <= 75) }
            let etag = try #require(feed.headers.first(name: .eTag))
            let again = try await t.send(.GET, "api/creator/creator/schedule.ics", headers: ["If-None-Match": etag])
            #expect(again.status == .notModified)
            try await t.send(.POST, "api/creator/streams/\(a)/cancel", bearer: try await t.token("creator"))
            let changed = try await t.send(.GET, "api/creator/creator/schedule.ics", headers: ["If-None-Match": etag])
            #expect(changed.status == .ok && changed.raw.components(separatedBy: "BEGIN:VEVENT").count == 2)
            #expect(try await t.send(.GET, "api/creator/m1/schedule.ics").status == .notFound)
        }
    }
}
