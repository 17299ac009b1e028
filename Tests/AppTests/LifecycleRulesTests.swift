import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

/// The stream state machine and the notification rules of issue 15, each reproduced against the
/// app (every test here failed before StreamLifecycle / Audience existed).
@Suite(.serialized) struct LifecycleRulesTests {
    static let liveSubject = "🔴 Name creator is LIVE NOW!"
    static let cancelSubject = "❌ Name creator cancelled a live stream"
    static let rescheduleSubject = "📅 Name creator rescheduled a live stream"
    static let members: Set<String> = ["m1@example.com", "m2@example.com", "both@example.com"]

    /// The audience seeded and a stream scheduled for `start`, its scheduled emails sent; returns its id.
    static func announced(_ t: TestApp, start: Date) async throws -> String {
        try await NotificationPipelineTests.seedAudience(t)
        let id = try await t.createStream(start: start)
        try await t.drainWorker()
        return id
    }

    /// 1. POST stop racing PATCH status {isLive:true}: never live *and* ended, one set of emails.
    @Test func stopRacingGoLiveNeverLeavesAnImpossibleState() async throws {
        for trial in 0..<4 {
            let transport = RecordingTransport()
            try await TestApp.run(mailTransport: transport, fileDatabase: true) { t in
                let id = try await Self.announced(t, start: t.start.addingTimeInterval(7200)) // the scheduled emails
                let owner = try await t.token("creator")
                let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                    for i in 0..<24 {
                        group.addTask {
                            i % 2 == 0
                                ? try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner).status
                                : try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true]).status
                        }
                    }
                    return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
                }
                #expect(statuses.allSatisfy { $0 == .ok || $0 == .conflict }, "trial \(trial): \(statuses)")
                let s = try await t.stream(id)
                #expect(!(s.isLive && s.endTime != nil), "trial \(trial): live and ended")
                #expect(s.state == .ended || s.state == .cancelled, "trial \(trial): \(s.state)")
                // Members cannot join what is over.
                let token = try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m1"))
                #expect(token.status == .conflict)
                try await t.drainWorker()
                let sent = await transport.sent
                let live = sent.filter { $0.subject == Self.liveSubject }, cancels = sent.filter { $0.subject == Self.cancelSubject }
                if s.state == .ended {
                    // Live-now emails only while it is live (often it ended first: none), at most one each.
                    #expect(live.count == Set(live.compactMap { $0.to.first?.address }).count && live.count <= 3 && cancels.isEmpty)
                } else {
                    #expect(Set(cancels.compactMap { $0.to.first?.address }) == Self.members && cancels.count == 3 && live.isEmpty)
                }
            }
        }
    }

    /// 2. Going live early moves the start to now and retires the reminder; pausing never makes
    /// the stream upcoming again.
    @Test func goingLiveEarlyRetiresTheReminderAndPausingIsNotUpcoming() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let start = t.start.addingTimeInterval(7200)
            let id = try await Self.announced(t, start: start)
            var owner = try await t.token("creator")
            t.setNow(t.start.addingTimeInterval(600))
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true]).status == .ok)
            var s = try await t.stream(id)
            #expect(s.startTime == t.start.addingTimeInterval(600) && s.wentLiveAt == s.startTime && s.reminderSent)
            #expect(try await t.reminderJob(id) == nil)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": false]).status == .ok)
            s = try await t.stream(id)
            #expect(s.state == .paused && !s.isUpcoming)
            // Not upcoming: no edits, not in the member's upcoming list, no reminder at the old time.
            let edit = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["startTime": ISO8601.string(start.addingTimeInterval(600))])
            #expect(edit.status == .conflict && edit.errorCode == "stream_live")
            let upcoming = try await t.send(.GET, "api/me/upcoming", bearer: try await t.token("m1"))
            #expect(upcoming.status == .ok)
            #expect((upcoming.json["streams"] as? [Any])?.isEmpty == true)
            t.setNow(start.addingTimeInterval(-900))
            try await t.drainWorker()
            #expect(try await t.app.deps.reminders.runDue(on: t.app.db).isEmpty)
            #expect(await transport.sent.filter { $0.subject.hasPrefix("⏰") }.isEmpty)
            // Resuming sends no second live-now email; stop ends it.
            owner = try await t.token("creator")
            #expect(try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true]).status == .ok)
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject == Self.liveSubject }.count == 3)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner).json["message"] as? String == "Stream ended successfully")
            #expect(try await t.stream(id).state == .ended)
        }
    }

    /// 3. Stopping a stream that never went live cancels it, and those who got the scheduled email hear so.
    @Test func stoppingAStreamThatNeverWentLiveCancelsIt() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let id = try await Self.announced(t, start: t.start.addingTimeInterval(7200))
            let owner = try await t.token("creator")
            let r = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            #expect(r.status == .ok && (r.json["message"] as? String)?.hasPrefix("Stream cancelled") == true)
            let s = try await t.stream(id)
            #expect(s.state == .cancelled && s.endTime == nil && s.scheduleRevision == 1)
            #expect(try await t.reminderJob(id) == nil)
            try await t.drainWorker()
            let cancels = await transport.sent.filter { $0.subject == Self.cancelSubject }
            #expect(Set(cancels.compactMap { $0.to.first?.address }) == Self.members && cancels.count == 3)
            #expect(cancels.allSatisfy { $0.calendar?.method == .cancel })
        }
    }

    /// 4. A manual reminder does not consume the automatic one; nobody gets two within minutes.
    @Test func manualRemindersAreSeparateAndNeverDoubleUp() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let start = t.start.addingTimeInterval(3 * 3600)
            let id = try await Self.announced(t, start: start)
            // Two hours ahead: a manual reminder to the three members.
            t.setNow(start.addingTimeInterval(-2 * 3600))
            let manual = try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: try await t.token("creator"), json: ["type": "reminder"])
            #expect(manual.status == .ok && manual.json["emailsSent"] as? Int == 3)
            try await t.drainWorker()
            #expect(await transport.sent.filter { $0.subject == "⏰ Name creator goes live in 2 hours!" }.count == 3)
            // A member who follows afterwards, and the automatic reminder at T−15 for everyone.
            try await t.importUsers([TestApp.user("late")], follows: [["followerId": "late", "followedId": "creator"]])
            t.setNow(start.addingTimeInterval(-20 * 60))
            // Five minutes before the automatic one, the creator reminds again: m1..both and late get it…
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: try await t.token("creator"), json: ["type": "reminder"]).json["emailsSent"] as? Int == 1)
            try await t.drainWorker()
            t.setNow(start.addingTimeInterval(-15 * 60))
            try await t.drainWorker()
            let auto = try await Delivery.query(on: t.app.db).filter(\.$streamID == id).filter(\.$kind == .reminder).all()
            #expect(auto.count == 4, "the automatic reminder was queued for everyone")
            // …and the automatic one, five minutes later, is skipped for "late" (just reminded), sent to the others.
            let byMember = Dictionary(uniqueKeysWithValues: auto.map { ($0.recipientID, $0) })
            #expect(byMember["late"]?.status == .skipped && byMember["late"]?.lastReply?.contains("reminded") == true)
            #expect(["m1", "m2", "both"].allSatisfy { byMember[$0]?.status == .sent })
            let lateReminders = await transport.messages(to: "late@example.com").filter { $0.subject.hasPrefix("⏰") }
            #expect(lateReminders.count == 1)
            #expect(await transport.messages(to: "m1@example.com").filter { $0.subject == "⏰ Name creator goes live in 15 minutes!" }.count == 1)
        }
    }

    /// 5. The reminder says the real time left.
    @Test func reminderWordingFollowsTheRealLead() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport, adjust: { $0.reminderLead = 60 }) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let start = t.start.addingTimeInterval(3600)
            _ = try await t.createStream(start: start)
            t.setNow(start.addingTimeInterval(-60))
            try await t.drainWorker()
            let reminders = await transport.sent.filter { $0.subject.hasPrefix("⏰") }
            #expect(reminders.count == 3 && reminders.allSatisfy { $0.subject == "⏰ Name creator goes live in 1 minute!" }, "\(reminders.map(\.subject))")
        }
        let later = TestApp.defaultStart.addingTimeInterval(90 * 86_400)
        let transport2 = RecordingTransport()
        try await TestApp.run(mailTransport: transport2) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let id = try await t.createStream(start: later)
            try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: try await t.token("creator"), json: ["type": "reminder"])
            try await t.drainWorker()
            let m2 = try #require(await transport2.messages(to: "m2@example.com").first { $0.subject.hasPrefix("⏰") })
            // 2026-06-05T16:13:20Z is 9:43 PM in Kolkata.
            #expect(m2.subject == "⏰ Name creator goes live on June 5 at 9:43 PM IST!")
        }
    }

    @Test(arguments: [
        (900.0, "in 15 minutes"), (880, "in 15 minutes"), (60, "in 1 minute"), (30, "now"), (420, "in 7 minutes"),
        (3600, "in 1 hour"), (5400, "in 1 hour 30 minutes"), (9000, "in 2 hours 30 minutes"),
    ])
    func startsIn(seconds: Double, expected: String) {
        let now = Date(timeIntervalSince1970: 1_772_900_000)
        #expect(ReminderWording.startsIn(now.addingTimeInterval(seconds), now: now, zoneID: "America/New_York") == expected)
    }

    @Test func startsInNamesTheDayInTheReadersZone() {
        // 2026-03-07T16:13:20Z = 11:13 AM EST, Saturday.
        let now = Date(timeIntervalSince1970: 1_772_900_000)
        let ny = "America/New_York"
        #expect(ReminderWording.startsIn(now.addingTimeInterval(5 * 3600), now: now, zoneID: ny) == "today at 4:13 PM EST")
        // Sunday 2026-03-08 is the DST switch: 7:30 AM EDT.
        #expect(ReminderWording.startsIn(Date(timeIntervalSince1970: 1_772_969_400), now: now, zoneID: ny) == "tomorrow at 7:30 AM EDT")
        #expect(ReminderWording.startsIn(Date(timeIntervalSince1970: 1_772_969_400), now: now, zoneID: "Asia/Kolkata") == "tomorrow at 5:00 PM IST")
        #expect(ReminderWording.startsIn(now.addingTimeInterval(3 * 86_400), now: now, zoneID: ny) == "on Tuesday at 12:13 PM EDT")
        #expect(ReminderWording.startsIn(now.addingTimeInterval(30 * 86_400), now: now, zoneID: ny) == "on April 6 at 12:13 PM EDT")
    }

    /// 6. A member without a zone of their own is never told the creator's zone is theirs.
    @Test func membersWithoutAZoneReadTheCreatorsZoneLabelledAsSuch() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let id = try await Self.announced(t, start: t.start.addingTimeInterval(7200))
            try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: try await t.token("creator"),
                             json: ["startTime": ISO8601.string(t.start.addingTimeInterval(3 * 3600))])
            t.setNow(t.start.addingTimeInterval(FanOut.rescheduleCoalesceSeconds))
            try await t.drainWorker()
            for message in await transport.messages(to: "both@example.com") {
                #expect(!message.text.contains("your timezone"), "\(message.subject)")
            }
            let moved = try #require(await transport.messages(to: "both@example.com").first { $0.subject == Self.rescheduleSubject })
            #expect(moved.text.contains("⏰ Times are in Name creator's timezone (America/New_York)."))
            let m2 = try #require(await transport.messages(to: "m2@example.com").first { $0.subject == Self.rescheduleSubject })
            #expect(m2.text.contains("⏰ Times are in your timezone (Asia/Kolkata).") && !m2.text.contains("Name creator's timezone"))
        }
    }

    /// 7. A creator deactivated or demoted by the admin sync no longer controls their streams, and
    /// what was queued for them is not sent.
    @Test func onlyAnActiveCreatorControlsTheirStreams() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let id = try await t.createStream(start: t.start.addingTimeInterval(7200))
            let owner = try await t.token("creator")
            // The fan-out has queued the scheduled emails; then the creator is deactivated.
            for job in try await Job.query(on: t.app.db).filter(\.$kind == .fanout).all() {
                try await FanOut.run(job, db: t.app.db, now: { t.app.deps.clock.now() })
            }
            try await t.importUsers([TestApp.user("creator", role: "creator", timezone: "America/New_York", active: false)])
            try await t.drainWorker()
            #expect(await transport.sent.isEmpty)
            let skipped = try await t.deliveries(id)
            #expect(skipped.count == 3 && skipped.allSatisfy { $0.status == .skipped && $0.lastReply == "creator no longer active" })
            let live = try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            #expect(live.status == .forbidden && live.errorCode == "creator_inactive")
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner).errorCode == "creator_inactive")
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: owner, json: ["type": "scheduled"]).status == .forbidden)
            // Demoted to member: the same.
            try await t.importUsers([TestApp.user("creator", role: "member", timezone: "America/New_York")])
            let demoted = try await t.send(.PATCH, "api/creator/streams/\(id)/status", bearer: owner, json: ["isLive": true])
            #expect(demoted.status == .forbidden && demoted.errorCode == "not_a_creator")
            #expect(try await t.stream(id).state == .scheduled)
            try await t.drainWorker()
            #expect(await transport.sent.isEmpty)
        }
    }

    /// 8. A burst of reschedules sends one email per member, with the latest time.
    @Test func rescheduleBurstsAreCoalesced() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let first = t.start.addingTimeInterval(86_400)
            let id = try await Self.announced(t, start: first)
            let owner = try await t.token("creator")
            var last = first
            for i in 1...30 {
                t.setNow(t.start.addingTimeInterval(Double(i) * 2))
                last = first.addingTimeInterval(Double(i) * 600)
                let r = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["startTime": ISO8601.string(last)])
                #expect(r.status == .ok)
                try await t.drainWorker()
            }
            #expect(await transport.sent.filter { $0.subject == Self.rescheduleSubject }.isEmpty)
            t.setNow(t.start.addingTimeInterval(60 + FanOut.rescheduleCoalesceSeconds))
            try await t.drainWorker()
            let notices = await transport.sent.filter { $0.subject == Self.rescheduleSubject }
            #expect(notices.count == 3 && Set(notices.compactMap { $0.to.first?.address }) == Self.members)
            let m2 = try #require(notices.first { $0.to.first?.address == "m2@example.com" })
            #expect(m2.text.contains("🕐 Was: \(TimeFormatting.format(first, zoneID: "Asia/Kolkata"))"))
            #expect(m2.text.contains("🕐 Now: \(TimeFormatting.format(last, zoneID: "Asia/Kolkata"))"))
            #expect(m2.calendar?.ics.contains("SEQUENCE:30\r\n") == true)
            #expect(try await t.stream(id).scheduleRevision == 30)
        }
    }

    /// The send-time re-check is the fan-out's rule: opting out of `scheduled` after a reschedule
    /// notice was queued skips it.
    @Test func optingOutAfterTheFanOutSkipsRescheduleAndCancelNotices() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            let id = try await Self.announced(t, start: t.start.addingTimeInterval(7200))
            let owner = try await t.token("creator")
            try await t.send(.POST, "api/creator/streams/\(id)/cancel", bearer: owner)
            // The cancellation fan-out runs (rows queued), then m2 switches scheduled emails off.
            let jobs = try await Job.query(on: t.app.db).filter(\.$kind == .fanout).filter(\.$status == .queued).all()
            for job in jobs { try await FanOut.run(job, db: t.app.db, now: { t.app.deps.clock.now() }) }
            let prefs = try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("m2"), json: ["scheduled": false])
            #expect(prefs.status == .ok, "\(prefs.raw)")
            try await t.drainWorker()
            let cancels = await transport.sent.filter { $0.subject == Self.cancelSubject }
            #expect(Set(cancels.compactMap { $0.to.first?.address }) == ["m1@example.com", "both@example.com"])
            let m2 = try await t.deliveries(id).first { $0.recipientID == "m2" && $0.kind == .cancelled }
            #expect(m2?.status == .skipped && m2?.lastReply == "recipient opted out")
        }
    }

    /// A recorder whose stop always fails (Agora down), counting the attempts.
    actor FailingRecordings: StreamRecordings {
        private(set) var stops: [String] = []
        struct Down: Error {}
        nonisolated func stopActive(_ stream: LiveStream, on db: any Database) async throws {
            await record(stream.id!)
            throw Down()
        }
        private func record(_ id: String) { stops.append(id) }
    }

    /// Every way a stream ends (stop, Agora's channel-destroyed event, the host-grace job) is the
    /// same transition: the recording is stopped once, and its failure never keeps the stream live.
    @Test func everyEndingIsOneTransitionAndARecordingFailureNeverKeepsAStreamLive() async throws {
        let recordings = FailingRecordings()
        try await TestApp.run(streamRecordings: recordings, adjust: { $0.ncsSecret = WebhookTests.secret }) { t in
            try await NotificationPipelineTests.seedAudience(t)
            var ids: [String] = []
            for _ in 0..<3 {
                let id = try await t.createStream(scheduled: false)
                try await t.app.db.sql.update(LiveStream.schema).set("resource_id", to: SQLBind("res-\(id)")).where("id", .equal, SQLBind(id)).run()
                ids.append(id)
            }
            let owner = try await t.token("creator")
            // 1. The creator stops it (twice: the second finds it ended).
            #expect(try await t.send(.POST, "api/creator/streams/\(ids[0])/stop", bearer: owner).json["message"] as? String == "Stream ended successfully")
            #expect(try await t.send(.POST, "api/creator/streams/\(ids[0])/stop", bearer: owner).json["message"] as? String == "Stream already ended")
            // 2. Agora destroys the channel (and says so twice).
            let destroyed = ["noticeId": "d1", "productId": 1, "eventType": 102, "payload": ["channelName": ids[1], "ts": 1]] as [String: Any]
            #expect(try await WebhookTests.post(t, destroyed).status == .ok)
            #expect(try await WebhookTests.post(t, destroyed.merging(["noticeId": "d2"]) { $1 }).status == .ok)
            // 3. The host leaves and does not come back.
            let creatorUID = try await User.find("creator", on: t.app.db)!.agoraUid
            #expect(try await WebhookTests.post(t, WebhookTests.event("h1", 104, channel: ids[2], uid: creatorUID, seq: 1)).status == .ok)
            t.setNow(t.start.addingTimeInterval(t.app.deps.config.hostGrace + 1))
            try await t.drainWorker()
            for id in ids {
                let s = try await t.stream(id)
                #expect(s.state == .ended && !s.isLive && s.endTime != nil, "\(id): \(s.state)")
            }
            #expect(await recordings.stops.sorted() == ids.sorted())
        }
    }

    /// Concurrent edits: every accepted one is its own revision, none is lost, one email per member.
    @Test func concurrentReschedulesAreEachOneRevision() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport, fileDatabase: true) { t in
            let first = t.start.addingTimeInterval(86_400)
            let id = try await Self.announced(t, start: first)
            let owner = try await t.token("creator")
            let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                for i in 1...20 {
                    group.addTask {
                        try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner,
                                         json: ["startTime": ISO8601.string(first.addingTimeInterval(Double(i) * 600))]).status
                    }
                }
                return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == .ok || $0 == .conflict }, "\(statuses)")
            #expect(try await t.stream(id).scheduleRevision == statuses.filter { $0 == .ok }.count)
            t.setNow(t.start.addingTimeInterval(FanOut.rescheduleCoalesceSeconds))
            try await t.drainWorker()
            let notices = await transport.sent.filter { $0.subject == Self.rescheduleSubject }
            #expect(notices.count == 3 && Set(notices.compactMap { $0.to.first?.address }) == Self.members)
        }
    }
}
