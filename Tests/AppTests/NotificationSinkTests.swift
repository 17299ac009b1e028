import Fluent
import Foundation
import Mailer
import Testing
import VaporTesting
@testable import App

/// The whole pipeline into the strict SMTP sink, every message parsed back by Python.
@Suite(.enabled(if: MailPeers.available, "needs the SMTP peers (scripts/test starts them)"))
struct NotificationSinkTests {
    @Test func twoThousandRecipientsGetExactlyOneScheduledEmailEach() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let zones: [String?] = ["America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
                                "America/St_Johns", "Pacific/Chatham", "UTC", nil]
        let names = ["Zoë Ångström 🏋️", "José Nuñez", "Ørjan 🔴", "李小龍", "Amélie", "Plain Name", "O'Brien \"Coach\"", "Ана"]
        var users: [[String: Any]] = [TestApp.user("creator", role: "creator", timezone: "America/New_York")]
        var follows: [[String: Any]] = [], subs: [[String: Any]] = []
        var eligible: [String: (name: String, zone: String?)] = [:]
        for i in 0..<2000 {
            let id = "u\(i)"
            let email = "m\(i)-\(run)@example.com"
            let zone = zones[i % zones.count]
            let active = i % 50 != 7
            users.append(["id": id, "name": "\(names[i % names.count]) \(i)", "email": email, "timezone": zone as Any? ?? NSNull(), "isActive": active])
            let follows_ = i % 3 != 2, subscribes = i % 4 == 0
            if follows_ { follows.append(["followerId": id, "followedId": "creator"]) }
            if subscribes { subs.append(["memberId": id, "creatorId": "creator", "status": i % 8 == 0 ? "active" : "cancelled"]) }
            if active && (follows_ || (subscribes && i % 8 == 0)) { eligible[email] = ("\(names[i % names.count]) \(i)", zone) }
        }
        let start = Date(timeIntervalSince1970: 1_775_350_800) // 2026-04-05T01:00:00Z: Australia's DST ends that day
        let client = try SMTPClient(configuration: MailPeers.sinkConfiguration(), maxConnections: 8)
        try await TestApp.run(start: start.addingTimeInterval(-86_400), mailTransport: SMTPTransport(client: client)) { t in
            try await t.importUsers(users, follows: follows, subscriptions: subs)
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: [
                "creatorId": "creator", "title": "Sunrise <Yoga> & Breath 🧘", "workoutType": "Yoga", "isScheduled": true,
                "startTime": ISO8601.string(start),
            ])
            #expect(r.status == .created)
            let stream = (r.json["stream"] as? [String: Any])?["id"] as? String ?? ""
            try await t.drainWorker(advancing: 60)
            let rows = try await t.deliveries(stream)
            #expect(rows.count == eligible.count)
            #expect(rows.allSatisfy { $0.status == Delivery.Status.sent }, "\(Dictionary(grouping: rows, by: \.status).mapValues(\.count))")
        }
        await client.shutdown()

        let stored = MailPeers.sinkMessages(containing: "-\(run)@")
        #expect(Set(stored.keys) == Set(eligible.keys))
        #expect(stored.values.allSatisfy { $0.count == 1 }, "duplicates: \(stored.filter { $0.value.count > 1 }.keys.prefix(5))")
        let files = stored.values.compactMap(\.first)
        let parsed = try MailPeers.parse(files)
        #expect(parsed.count == files.count)
        let epoch = Int(start.timeIntervalSince1970)
        let oracle = try MailPeers.zoneinfo(epoch: epoch, zones: zones.compactMap { $0 })
        func expected(_ zone: String) -> String {
            let o = oracle[zone]!
            return o.local + " " + MailPeers.expectedLabel(tzname: o.tzname, offset: o.offset)
        }
        for message in parsed {
            let to = (message["to"] as? [[String: Any]])?.first
            let address = to?["address"] as? String ?? ""
            guard let member = eligible[address] else { Issue.record("unexpected recipient \(address)"); continue }
            #expect(to?["name"] as? String == member.name)
            #expect(message["subject"] as? String == "📅 Name creator scheduled a live stream")
            #expect((message["defects"] as? [Any])?.isEmpty == true, "\(message["defects"] ?? "")")
            #expect(message["structure"] as? String == "multipart/alternative[text/plain,text/html]")
            let parts = message["parts"] as? [[String: Any]] ?? []
            let text = (parts.first?["content"] as? String ?? "").replacingOccurrences(of: "\r\n", with: "\n")
            let lines = text.components(separatedBy: "\n")
            let memberZone = member.zone ?? "America/New_York"
            #expect(lines.contains("Hi \(member.name),"))
            #expect(lines.contains("📺 Title: Sunrise <Yoga> & Breath 🧘"))
            #expect(lines.contains("🏋️ Workout Type: Yoga"))
            #expect(lines.contains("🕐 Start Time: \(expected("America/New_York"))"))
            #expect(lines.contains("⏰ In your timezone (\(memberZone)): \(expected(memberZone))"), "\(lines)")
            let html = parts.dropFirst().first?["content"] as? String ?? ""
            #expect(html.contains("Sunrise &lt;Yoga&gt; &amp; Breath 🧘"))
        }
    }
}
