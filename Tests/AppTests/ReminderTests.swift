import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

extension TestApp {
    func reminderJob(_ stream: String) async throws -> Job? {
        try await Job.query(on: app.db).filter(\.$key == "reminder:\(stream)").first()
    }
    func stream(_ id: String) async throws -> LiveStream { try await LiveStream.find(id, on: app.db)! }
}

@Suite struct ReminderTests {
    @Test func reminderFiresAtItsDueTimeOnceAcrossDST() async throws {
        let transport = RecordingTransport()
        // The creator's zone switches to EDT on 2026-03-08; due times are UTC arithmetic regardless.
        let now = Date(timeIntervalSince1970: 1_772_900_000)
        let start = Date(timeIntervalSince1970: 1_772_955_000) // 3:30 AM EDT, an hour after the switch
        try await TestApp.run(start: now, mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let id = try await t.createStream(start: start)
            let job = try #require(try await t.reminderJob(id))
            #expect(job.runAt == start.addingTimeInterval(-900))
            try await t.drainWorker()
            #expect(await transport.sent.allSatisfy { $0.subject.hasPrefix("📅") })

            t.setNow(start.addingTimeInterval(-901))
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.isEmpty) // never early
            t.setNow(start.addingTimeInterval(-900))
            try await t.drainWorker()
            let reminders = await transport.sent.filter { $0.subject == "⏰ Name creator goes live in 15 minutes!" }
            #expect(reminders.count == 3)
            let m1 = try #require(reminders.first { $0.to.first?.address == "m1@example.com" })
            #expect(m1.text.contains("🕐 Starts at: March 8, 2026 at 1:15 PM GMT+5:45"))
            #expect(m1.text.contains("Reminder: Name creator's live stream starts soon!"))
            #expect(try await t.stream(id).reminderSent == true)
            #expect(try await t.reminderJob(id)?.status == Job.Status.done)
            // The cron pass afterwards finds nothing to do.
            #expect(try await t.app.deps.reminders.runDue(on: t.app.db).isEmpty)
        }
    }

    @Test func startingWithinTheLeadTimeGetsNoSecondEmail() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let id = try await t.createStream(start: t.start.addingTimeInterval(600))
            #expect(try await t.reminderJob(id) == nil)
            #expect(try await t.stream(id).reminderSent == true)
            t.setNow(t.start.addingTimeInterval(300))
            try await t.drainWorker()
            let sent = await transport.sent
            #expect(sent.count == 3 && sent.allSatisfy { $0.subject.hasPrefix("📅") })
        }
    }

    @Test func catchUpAfterDowntime() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let soon = try await t.createStream(start: t.start.addingTimeInterval(3600), title: "Soon")
            let missed = try await t.createStream(start: t.start.addingTimeInterval(1800), title: "Missed")
            // Down until 5 minutes before "Soon" starts — "Missed" started 25 minutes ago.
            t.setNow(t.start.addingTimeInterval(3300))
            try await t.drainWorker()
            let reminders = await transport.sent.filter { $0.subject.hasPrefix("⏰") }
            #expect(reminders.count == 3)
            #expect(reminders.allSatisfy { $0.text.contains("Title: Soon") })
            #expect(try await t.reminderJob(soon)?.status == Job.Status.done)
            let skipped = try #require(try await t.reminderJob(missed))
            #expect(skipped.status == Job.Status.skipped && skipped.lastError == "stream start has passed")
        }
    }

    @Test func liveEndedOrCancelledStreamsGetNoReminder() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let owner = try await t.token("creator")
            let live = try await t.createStream(start: t.start.addingTimeInterval(3600))
            try await t.send(.PATCH, "api/creator/streams/\(live)/status", bearer: owner, json: ["isLive": true])
            let ended = try await t.createStream(start: t.start.addingTimeInterval(3600))
            try await t.send(.POST, "api/creator/streams/\(ended)/stop", bearer: owner)
            let cancelled = try await t.createStream(start: t.start.addingTimeInterval(3600))
            try await t.send(.POST, "api/creator/streams/\(cancelled)/cancel", bearer: owner)
            t.setNow(t.start.addingTimeInterval(2700))
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.isEmpty)
            #expect(try await t.app.deps.reminders.runDue(on: t.app.db).isEmpty)
        }
    }
}

@Suite struct RescheduleAndCancelTests {
    @Test func rescheduleMovesTheReminderAndTellsThoseWhoGotTheInvite() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let first = t.start.addingTimeInterval(7200), second = t.start.addingTimeInterval(3 * 3600)
            let id = try await t.createStream(start: first)
            try await t.drainWorker()
            // A follower who arrives after the scheduled email is not told about the change.
            try await t.importUsers([TestApp.user("late")], follows: [["followerId": "late", "followedId": "creator"]])
            let owner = try await t.token("creator")
            let r = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner,
                                     json: ["startTime": ISO8601.string(second), "title": "Moved session"])
            #expect(r.status == .ok && r.json["message"] as? String == "Stream rescheduled")
            #expect((r.json["stream"] as? [String: Any])?["startTime"] as? String == ISO8601.string(second))
            let s = try await t.stream(id)
            #expect(s.scheduleRevision == 1 && s.reminderSent == false && s.title == "Moved session")
            #expect(try await t.reminderJob(id)?.runAt == second.addingTimeInterval(-900))
            try await t.drainWorker()
            // Coalesced: the notice waits for further edits, then goes out once.
            #expect(await transport.sent.filter { $0.subject == "📅 Name creator rescheduled a live stream" }.isEmpty)
            t.setNow(t.start.addingTimeInterval(FanOut.rescheduleCoalesceSeconds))
            try await t.drainWorker()
            let notices = await transport.sent.filter { $0.subject == "📅 Name creator rescheduled a live stream" }
            #expect(Set(notices.compactMap { $0.to.first?.address }) == ["m1@example.com", "m2@example.com", "both@example.com"])
            let m2 = try #require(notices.first { $0.to.first?.address == "m2@example.com" })
            #expect(m2.text.contains("🕐 Was: \(TimeFormatting.format(first, zoneID: "Asia/Kolkata"))"))
            #expect(m2.text.contains("🕐 Now: \(TimeFormatting.format(second, zoneID: "Asia/Kolkata"))"))
            let ics = try #require(m2.calendar)
            #expect(ics.method == .publish && ics.ics.contains("SEQUENCE:1\r\n") && ics.ics.contains("UID:\(id)@api.fit.example.com\r\n"))
            #expect(ics.ics.contains("DTSTART:\(CalendarEvent.utc(second))"))
            // The old due time passes quietly; the new one fires.
            t.setNow(first.addingTimeInterval(-900))
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.isEmpty)
            t.setNow(second.addingTimeInterval(-900))
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.count == 4) // the late follower too
            // Same time again: nothing changes, nobody is emailed.
            let same = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: try await t.token("creator"), json: ["startTime": ISO8601.string(second)])
            #expect(same.json["message"] as? String == "Stream updated")
        }
    }

    @Test func editRulesAndAuthorization() async throws {
        try await TestApp.run { t in
            try await NotificationPipelineTests.seedAudience(t)
            try await t.importUsers([TestApp.user("creator2", role: "creator")])
            let id = try await t.createStream()
            let owner = try await t.token("creator")
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: try await t.token("creator2"), json: ["title": "x"]).status == .forbidden)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["startTime": "2020-01-01T00:00:00Z"]).status == .badRequest)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["title": ""]).status == .badRequest)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/cancel", bearer: try await t.token("m1")).status == .forbidden)
            try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            let live = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["title": "x"])
            #expect(live.status == .conflict)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/cancel", bearer: owner).status == .conflict)
            try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["title": "x"]).status == .conflict)
        }
    }

    @Test func cancelDropsTheReminderAndSendsACancelInvite() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let id = try await t.createStream()
            try await t.drainWorker()
            let owner = try await t.token("creator")
            let r = try await t.send(.POST, "api/creator/streams/\(id)/cancel", bearer: owner)
            #expect(r.status == .ok && r.json["success"] as? Bool == true)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/cancel", bearer: owner).status == .ok) // idempotent
            #expect(try await t.reminderJob(id) == nil)
            try await t.drainWorker()
            let notices = await transport.sent.filter { $0.subject == "❌ Name creator cancelled a live stream" }
            #expect(notices.count == 3)
            let ics = try #require(notices.first?.calendar)
            #expect(ics.method == .cancel && ics.ics.contains("METHOD:CANCEL\r\n") && ics.ics.contains("STATUS:CANCELLED\r\n"))
            #expect(ics.ics.contains("UID:\(id)@api.fit.example.com\r\n") && ics.ics.contains("SEQUENCE:1\r\n"))
            // Gone from the schedule unless asked for; no tokens, no going live.
            let member = try await t.token("m1")
            let list = try await t.send(.GET, "api/creator/creator/scheduled-streams", bearer: member)
            #expect((list.json["streams"] as? [Any])?.isEmpty == true)
            let all = try await t.send(.GET, "api/creator/creator/scheduled-streams?includeCancelled=true", bearer: member)
            let listed = try #require((all.json["streams"] as? [[String: Any]])?.first)
            #expect(listed["cancelledAt"] as? String == ISO8601.string(t.start))
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: member).errorCode == "stream_cancelled")
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true]).status == .conflict)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: owner, json: ["type": "reminder"]).status == .conflict)
        }
    }
}

@Suite struct CronTests {
    @Test func cronEndpointsNeedTheSecret() async throws {
        try await TestApp.run(adjust: { $0.cronSecret = "cron-secret-0123456789" }) { t in
            try await NotificationPipelineTests.seedAudience(t)
            for (method, path) in [(HTTPMethod.POST, "api/cron/trigger-stream-emails"), (.GET, "api/cron/check-stream-reminders")] {
                #expect(try await t.send(method, path).status == .unauthorized)
                #expect(try await t.send(method, path, bearer: "wrong-secret-0123456789").status == .unauthorized)
                #expect(try await t.send(method, path, bearer: try await t.token("creator")).status == .unauthorized)
                let ok = try await t.send(method, path, bearer: "cron-secret-0123456789")
                #expect(ok.status == .ok && ok.json["success"] as? Bool == true && ok.json["remindersSent"] as? Int == 0)
            }
        }
        try await TestApp.run { t in
            let off = try await t.send(.POST, "api/cron/trigger-stream-emails", bearer: "anything")
            #expect(off.status == .notFound && off.errorCode == "feature_disabled")
        }
    }

    /// The original design's schedule: cron every 14 minutes. With the worker running as well,
    /// each reminder goes out once, and never before its due time.
    @Test func cronEveryFourteenMinutesNeverDuplicatesOrSendsEarly() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport, adjust: { $0.cronSecret = "cron-secret-0123456789" }) { t in
            try await NotificationPipelineTests.seedAudience(t)
            var due: [String: Date] = [:]
            for minutes in [20, 29, 31, 44, 58, 75] {
                let start = t.start.addingTimeInterval(TimeInterval(minutes * 60))
                due[try await t.createStream(start: start, title: "T+\(minutes)")] = start.addingTimeInterval(-900)
            }
            try await t.drainWorker()
            var triggered: [String: Date] = [:]
            for step in 1...7 {
                let now = t.start.addingTimeInterval(TimeInterval(step * 14 * 60))
                t.setNow(now)
                let cron = try await t.send(step % 2 == 0 ? .GET : .POST, step % 2 == 0 ? "api/cron/check-stream-reminders" : "api/cron/trigger-stream-emails",
                                            bearer: "cron-secret-0123456789")
                for s in cron.json["streams"] as? [[String: Any]] ?? [] { triggered[s["id"] as! String] = now }
                try await t.drainWorker()
            }
            for (id, at) in triggered { #expect(at >= due[id]!, "stream \(id) reminded at \(at), due \(due[id]!)") }
            let reminders = try await Delivery.query(on: t.app.db).filter(\.$kind == .reminder).all()
            #expect(reminders.count == due.count * 3)
            #expect(Set(reminders.map { "\($0.streamID)/\($0.recipientID)" }).count == reminders.count)
            for r in reminders { #expect(r.createdAt.map { $0 >= due[r.streamID]! } ?? false) }
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.count == due.count * 3)
        }
    }
}
