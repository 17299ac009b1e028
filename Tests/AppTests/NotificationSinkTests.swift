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
        let parsed = try await MailPeers.parse(files)
        #expect(parsed.count == files.count)
        let epoch = Int(start.timeIntervalSince1970)
        let zoneIDs = zones.compactMap { $0 }
        let answers = try await ZoneOracle.format(zoneIDs.map { (epoch: epoch, zone: $0) })
        let oracle = Dictionary(uniqueKeysWithValues: zip(zoneIDs, answers))
        func expected(_ zone: String) -> String { ZoneOracle.expected(oracle[zone]!) }
        for message in parsed {
            let to = (message["to"] as? [[String: Any]])?.first
            let address = to?["address"] as? String ?? ""
            guard let member = eligible[address] else { Issue.record("unexpected recipient \(address)"); continue }
            #expect(to?["name"] as? String == member.name)
            #expect(message["subject"] as? String == "📅 Name creator scheduled a live stream")
            #expect((message["defects"] as? [Any])?.isEmpty == true, "\(message["defects"] ?? "")")
            #expect(message["structure"] as? String == "multipart/mixed[multipart/alternative[text/plain,text/html],text/calendar]")
            let parts = message["parts"] as? [[String: Any]] ?? []
            let text = (parts.first?["content"] as? String ?? "").replacingOccurrences(of: "\r\n", with: "\n")
            let lines = text.components(separatedBy: "\n")
            #expect(lines.contains("Hi \(member.name),"))
            #expect(lines.contains("📺 Title: Sunrise <Yoga> & Breath 🧘"))
            #expect(lines.contains("🏋️ Workout Type: Yoga"))
            #expect(lines.contains("🕐 Start Time: \(expected("America/New_York"))"))
            if let memberZone = member.zone {
                #expect(lines.contains("⏰ In your timezone (\(memberZone)): \(expected(memberZone))"), "\(lines)")
            } else {
                // No zone of their own: the creator's time only, never called "your timezone".
                #expect(!text.contains("your timezone"), "\(lines)")
            }
            let html = parts.dropFirst().first?["content"] as? String ?? ""
            #expect(html.contains("Sunrise &lt;Yoga&gt; &amp; Breath 🧘"))
        }
    }

    @Test func invitesParseInIcalendarAndOptOutsAreHonoured() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let client = try SMTPClient(configuration: MailPeers.sinkConfiguration(), maxConnections: 2)
        let start = Date(timeIntervalSince1970: 1_792_900_800) // 2026-10-25T04:00:00Z, hours after the EU DST change
        try await TestApp.run(start: start.addingTimeInterval(-3600), mailTransport: SMTPTransport(client: client)) { t in
            let members = ["keen", "muted", "noscheduled"]
            try await t.importUsers([TestApp.user("creator", role: "creator", timezone: "Europe/Berlin")]
                + members.map { ["id": $0, "name": "Member \($0)", "email": "\($0)-\(run)@example.com", "timezone": "Europe/London"] },
                follows: members.map { ["followerId": $0, "followedId": "creator"] })
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("muted"), json: ["mutedCreators": ["creator"]])
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("noscheduled"), json: ["scheduled": false])
            let title = "HIIT, part 2; no excuses \\ 🏋️ " + String(repeating: "ü", count: 40)
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: [
                "creatorId": "creator", "title": title, "description": "Bring water,\nand a mat; really.", "isScheduled": true,
                "startTime": ISO8601.string(start),
            ])
            let stream = (r.json["stream"] as? [String: Any])?["id"] as? String ?? ""
            // A transient failure on a loaded machine waits for a retry on the manual clock (a few minutes, far from the reminder).
            try await t.drainWorker(until: { try await !t.deliveries(stream).contains(where: { $0.status == .queued }) }, advancing: 60, rounds: 5)
            let stored = MailPeers.sinkMessages(containing: "-\(run)@")
            #expect(Set(stored.keys) == ["keen-\(run)@example.com"])
            let statuses = Dictionary(uniqueKeysWithValues: try await t.deliveries(stream).map { ($0.recipientID, $0.status) })
            #expect(statuses == ["keen": .sent, "muted": .skipped, "noscheduled": .skipped])

            let parsed = try await #require(try await MailPeers.parse(stored.values.compactMap(\.first)).first)
            let unsubscribe = (parsed["headers"] as? [[String]])?.first { $0[0] == "List-Unsubscribe" }?[1]
            #expect(unsubscribe?.hasPrefix("<https://api.fit.example.com/api/unsubscribe/") == true)
            let ics = try #require((parsed["parts"] as? [[String: Any]])?.last?["content"] as? String)
            let calendar = try await Self.icalendar(ics)
            #expect(calendar["method"] as? String == "PUBLISH")
            #expect(calendar["crlf_only"] as? Bool == true)
            #expect((calendar["max_line_octets"] as? Int ?? 99) <= 75)
            let event = try #require((calendar["events"] as? [[String: Any]])?.first)
            #expect(event["uid"] as? String == "\(stream)@api.fit.example.com")
            #expect(event["sequence"] as? Int == 0)
            #expect(event["dtstart"] as? String == "2026-10-25T04:00:00+00:00")
            #expect(event["dtend"] as? String == "2026-10-25T05:00:00+00:00")
            #expect(event["summary"] as? String == "\(title) — Name creator")
            #expect((event["description"] as? String)?.hasPrefix("Bring water,\nand a mat; really.") == true)
            #expect(event["url"] as? String == "\(TestCredentials.frontend)/live/\(stream)")
        }
        await client.shutdown()
    }

    /// PyPI `icalendar` reading the invite (scripts/oracles/parse_ics.py).
    static func icalendar(_ ics: String) async throws -> [String: Any] {
        let data = try await Blocking.run { try icalendarOutput(ics) }
        return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
    }

    private static func icalendarOutput(_ ics: String) throws -> Data {
        let python = ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"]!
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/oracles/parse_ics.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(ics.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(10_000) }
        return data
    }
}
