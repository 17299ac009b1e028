import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Records what would have been sent; scripted failures by local part:
/// `flaky…` fails transiently twice, `bounce…` fails permanently, `down…` always transiently.
actor RecordingTransport: MailTransport {
    private(set) var sent: [MailMessage] = []
    private var failures: [String: Int] = [:]

    nonisolated var name: String { "recording" }

    nonisolated func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        await record(message)
    }

    private func record(_ message: MailMessage) -> MailOutcome {
        let address = message.to.first?.address ?? ""
        if address.hasPrefix("bounce") { return .permanent(reason: "550 5.1.1 no such user") }
        if address.hasPrefix("down") { return .transient(reason: "451 try later") }
        if address.hasPrefix("flaky") {
            failures[address, default: 0] += 1
            if failures[address]! <= 2 { return .transient(reason: "451 try later") }
        }
        sent.append(message)
        return .accepted(reply: "250 ok")
    }

    nonisolated func shutdown() async {}
    func messages(to address: String) -> [MailMessage] { sent.filter { $0.to.first?.address == address } }
}

/// Holds every email until `open()`, then accepts it; counts the emails waiting.
actor GatedTransport: MailTransport {
    private(set) var sent: [MailMessage] = []
    private var gate: [CheckedContinuation<Void, Never>] = []
    private var isOpen = false
    var waiting: Int { gate.count }

    nonisolated var name: String { "gated" }

    nonisolated func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        await hold(message)
    }

    private func hold(_ message: MailMessage) async -> MailOutcome {
        if !isOpen { await withCheckedContinuation { gate.append($0) } }
        sent.append(message)
        return .accepted(reply: "250 ok")
    }

    func open() {
        isOpen = true
        for c in gate { c.resume() }
        gate = []
    }

    nonisolated func shutdown() async {}
}

extension TestApp {
    func deliveries(_ stream: String) async throws -> [Delivery] {
        try await Delivery.query(on: app.db).filter(\.$streamID == stream).all()
    }

    /// Runs the worker until nothing is due, moving the clock past retry delays.
    func drainWorker(advancing: TimeInterval = 0) async throws {
        for _ in 0..<20 {
            try await app.deps.worker.drain()
            guard advancing > 0 else { return }
            setNow(app.deps.clock.now().addingTimeInterval(advancing))
        }
    }

    /// Drains until `done`, moving the clock `advancing` between rounds (at most `rounds` times): a
    /// call to a fake that timed out on a loaded machine is retried after a backoff the manual clock
    /// has to reach.
    func drainWorker(until done: () async throws -> Bool, advancing: TimeInterval = 300, rounds: Int = 6) async throws {
        try await app.deps.worker.drain()
        for _ in 0..<rounds {
            guard try await !done() else { return }
            setNow(app.deps.clock.now().addingTimeInterval(advancing))
            try await app.deps.worker.drain()
        }
    }
}

@Suite struct NotificationPipelineTests {
    /// creator + m1 (follows), m2 (subscribes), both (follows and subscribes), gone (inactive follower),
    /// lapsed (cancelled subscription), stranger.
    static func seedAudience(_ t: TestApp) async throws {
        try await t.importUsers([
            TestApp.user("creator", role: "creator", timezone: "America/New_York"),
            ["id": "m1", "name": "Zoë Ångström 🏋️", "email": "m1@example.com", "timezone": "Asia/Kathmandu"],
            ["id": "m2", "name": "Raj", "email": "m2@example.com", "timezone": "Asia/Kolkata"],
            ["id": "both", "name": "Bo", "email": "both@example.com", "timezone": NSNull()],
            TestApp.user("gone", active: false), TestApp.user("lapsed"), TestApp.user("stranger"),
        ], follows: [
            ["followerId": "m1", "followedId": "creator"], ["followerId": "both", "followedId": "creator"],
            ["followerId": "gone", "followedId": "creator"],
        ], subscriptions: [
            ["memberId": "m2", "creatorId": "creator", "status": "active"], ["memberId": "both", "creatorId": "creator", "status": "active"],
            ["memberId": "lapsed", "creatorId": "creator", "status": "cancelled"],
        ])
    }

    @Test func goingLiveEmailsEveryEligibleMemberOnce() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            try await t.drainWorker()
            let sent = await transport.sent
            #expect(Set(sent.compactMap { $0.to.first?.address }) == ["m1@example.com", "m2@example.com", "both@example.com"])
            #expect(sent.count == 3)
            let m1 = try #require(await transport.messages(to: "m1@example.com").first)
            #expect(m1.subject == "🔴 Name creator is LIVE NOW!")
            #expect(m1.to.first?.name == "Zoë Ångström 🏋️")
            let lines = m1.text.components(separatedBy: "\n")
            #expect(lines.contains("Hi Zoë Ångström 🏋️,"))
            #expect(lines.contains("Name creator just started a live stream!"))
            #expect(lines.contains("📺 Title: Morning HIIT"))
            #expect(!lines.contains { $0.hasPrefix("🏋️ Workout Type") }) // no workout type → no line
            #expect(lines.contains("Join now: \(TestCredentials.frontend)/live/\(stream)"))
            #expect(lines.contains("Don't miss out!"))
            #expect(m1.html?.contains("Zoë Ångström 🏋️") == true)
            #expect(try await t.deliveries(stream).allSatisfy { $0.status == Delivery.Status.sent && $0.sentAt != nil && $0.lastReply == "250 ok" })

            // Going live again after a drop does not re-blast; notify says nobody new.
            let owner = try await t.token("creator")
            try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: owner, json: ["isLive": false])
            try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: owner, json: ["isLive": true])
            let again = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "live_now"])
            #expect(again.status == .ok && again.json["emailsSent"] as? Int == 0)
            try await t.drainWorker()
            #expect(await transport.sent.count == 3)
        }
    }

    /// Pages are cut on candidates, not on eligible rows: a whole page of inactive followers and
    /// subscriber/follower overlaps across page boundaries lose nobody and queue nobody twice.
    @Test func fanOutPagesAcrossFilteredCandidatesAndOverlaps() async throws {
        try await TestApp.run { t in
            let inactive = (0..<(FanOut.pageSize + 20)).map { TestApp.user(String(format: "a%04d", $0), active: false) }
            let active = (0..<(FanOut.pageSize + 30)).map { TestApp.user(String(format: "b%04d", $0)) }
            try await t.importUsers([TestApp.user("creator", role: "creator")] + inactive + active,
                                    follows: (inactive + active).map { ["followerId": $0["id"]!, "followedId": "creator"] },
                                    // every third active member also subscribes (one person, one email)
                                    subscriptions: active.enumerated().filter { $0.offset % 3 == 0 }
                                        .map { ["memberId": $0.element["id"]!, "creatorId": "creator", "status": "active"] })
            let stream = try await t.createStream(scheduled: false)
            try await t.app.deps.worker.drain()
            let rows = try await t.deliveries(stream)
            #expect(rows.count == active.count)
            #expect(Set(rows.map(\.recipientID)) == Set(active.map { $0["id"] as! String }))
        }
    }

    @Test func scheduledEmailShowsBothZones() async throws {
        let transport = RecordingTransport()
        // 2026-03-08T07:30:00Z: 3:30 AM EDT, hours after the US DST switch.
        let start = Date(timeIntervalSince1970: 1_772_955_000)
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let r = try await t.send(.POST, "api/creator/streams/create", bearer: try await t.token("creator"), json: [
                "creatorId": "creator", "title": "Leg <day>", "workoutType": "Strength", "isScheduled": true, "startTime": ISO8601.string(start),
            ])
            #expect(r.status == .created)
            try await t.drainWorker()
            let m1 = try #require(await transport.messages(to: "m1@example.com").first)
            #expect(m1.subject == "📅 Name creator scheduled a live stream")
            let lines = m1.text.components(separatedBy: "\n")
            #expect(lines.contains("🕐 Start Time: March 8, 2026 at 3:30 AM EDT"))
            #expect(lines.contains("⏰ In your timezone (Asia/Kathmandu): March 8, 2026 at 1:15 PM GMT+5:45"))
            #expect(lines.contains("🏋️ Workout Type: Strength"))
            #expect(m1.html?.contains("Leg &lt;day&gt;") == true)
            #expect(m1.html?.contains("Leg <day>") == false)
            // No zone of their own: only the creator's time, never presented as "your timezone".
            let both = try #require(await transport.messages(to: "both@example.com").first)
            #expect(both.text.contains("🕐 Start Time: March 8, 2026 at 3:30 AM EDT"))
            #expect(!both.text.contains("your timezone") && both.html?.contains("your timezone") == false)
            let m2 = try #require(await transport.messages(to: "m2@example.com").first)
            #expect(m2.text.contains("⏰ In your timezone (Asia/Kolkata): March 8, 2026 at 1:00 PM IST"))
        }
    }

    @Test func notifyCountsQueuesOnceAndReportsStatuses() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(streamEvents: LoggingStreamEvents(logger: .init(label: "test")), mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream()
            let owner = try await t.token("creator")
            let first = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder", "streamId": stream])
            #expect(first.status == .ok && first.json["success"] as? Bool == true && first.json["emailsSent"] as? Int == 3, "\(first.raw)")
            // Before the fan-out has even run, a second call queues nobody twice.
            let second = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder"])
            #expect(second.json["emailsSent"] as? Int == 0)
            try await t.drainWorker()
            let third = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder"])
            #expect(third.json["emailsSent"] as? Int == 0)
            try await t.drainWorker()
            #expect(await transport.sent.count == 3)
            // A new follower is picked up by the next notify.
            try await t.importUsers([TestApp.user("newbie")], follows: [["followerId": "newbie", "followedId": "creator"]])
            let fourth = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder"])
            #expect(fourth.json["emailsSent"] as? Int == 1)
            try await t.drainWorker()
            #expect(await transport.sent.count == 4)

            let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: owner)
            let byKind = try #require(counts.json["notifications"] as? [String: [String: Int]])
            // A manual reminder is its own kind of send: the automatic one is still to come.
            #expect(byKind["manual_reminder"]?["sent"] == 4)
            let zero = ["queued": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0, "delivered": 0, "bounced": 0, "complained": 0]
            #expect(byKind["reminder"] == zero)
            #expect(byKind["live_now"] == zero)
        }
    }

    @Test func notifyValidationAndAuthorization() async throws {
        try await TestApp.run { t in
            try await Self.seedAudience(t)
            try await t.importUsers([TestApp.user("creator2", role: "creator")])
            let stream = try await t.createStream()
            let owner = try await t.token("creator")
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: try await t.token("creator2"), json: ["type": "reminder"]).status == .forbidden)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: try await t.token("m1"), json: ["type": "reminder"]).status == .forbidden)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", json: ["type": "reminder"]).status == .unauthorized)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "spam"]).status == .badRequest)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "live_now"]).errorCode == "stream_not_live")
            #expect(try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator2")).status == .forbidden)
            try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: owner)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder"]).status == .conflict)
        }
    }

    @Test func retriesTransientFailuresAndRecordsPermanentOnes() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await t.importUsers([
                TestApp.user("creator", role: "creator"),
                ["id": "flaky", "name": "F", "email": "flaky@example.com"], ["id": "bounce", "name": "B", "email": "bounce@example.com"],
                ["id": "down", "name": "D", "email": "down@example.com"], ["id": "fine", "name": "OK", "email": "fine@example.com"],
            ], follows: ["flaky", "bounce", "down", "fine"].map { ["followerId": $0, "followedId": "creator"] })
            let stream = try await t.createStream(scheduled: false)
            try await t.drainWorker(advancing: 3600) // retry delays are 0.05 s·2^n here; jump well past them
            let rows = Dictionary(uniqueKeysWithValues: try await t.deliveries(stream).map { ($0.recipientID, $0) })
            #expect(rows["fine"]?.status == Delivery.Status.sent && rows["fine"]?.attempts == 1)
            #expect(rows["flaky"]?.status == Delivery.Status.sent && rows["flaky"]?.attempts == 3)
            #expect(rows["bounce"]?.status == Delivery.Status.failed && rows["bounce"]?.attempts == 1)
            #expect(rows["bounce"]?.lastReply?.contains("550") == true)
            #expect(rows["down"]?.status == Delivery.Status.failed && rows["down"]?.attempts == 8)
            #expect(await transport.messages(to: "flaky@example.com").count == 1)
        }
    }

    @Test func backoffGrowsWithJitter() {
        let b = Backoff(base: 30)
        #expect(b.delay(afterAttempt: 1, jitter: 1) == 30)
        #expect(b.delay(afterAttempt: 4, jitter: 1) == 240)
        #expect(b.delay(afterAttempt: 30, jitter: 1) == 3600)
        #expect(b.delay(afterAttempt: 2, jitter: 0.5) == 30)
    }

    @Test func unfollowingBeforeTheSendSkipsTheMember() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            // Run only the fan-out job: deliveries exist, nothing sent yet.
            let job = try #require(try await Job.query(on: t.app.db).first())
            try await FanOut.run(job, db: t.app.db, now: { t.app.deps.clock.now() })
            try await t.send(.DELETE, "api/admin/follows", bearer: t.admin, json: ["followerId": "m1", "followedId": "creator"])
            try await t.drainWorker()
            let rows = Dictionary(uniqueKeysWithValues: try await t.deliveries(stream).map { ($0.recipientID, $0) })
            #expect(rows["m1"]?.status == Delivery.Status.skipped)
            #expect(await transport.messages(to: "m1@example.com").isEmpty)
            #expect(await transport.sent.count == 2)
        }
    }

    @Test func expiredLeasesAreReclaimed() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            let job = try #require(try await Job.query(on: t.app.db).first())
            try await FanOut.run(job, db: t.app.db, now: { t.app.deps.clock.now() })
            // A worker that died mid-send: rows stuck in `sending` under its lease.
            let sql = t.app.db as! any SQLDatabase
            try await sql.update(Delivery.schema).set("status", to: SQLBind("sending")).set("locked_by", to: SQLBind("dead-worker"))
                .set("locked_until", to: SQLBind(t.start.addingTimeInterval(60))).run()
            try await t.app.deps.worker.drain()
            #expect(await transport.sent.isEmpty) // lease still valid
            t.setNow(t.start.addingTimeInterval(61))
            try await t.drainWorker()
            #expect(await transport.sent.count == 3)
            #expect(try await t.deliveries(stream).allSatisfy { $0.status == Delivery.Status.sent })
        }
    }

    /// Fan-out emails have no row until their outcome. A member erased while their email is being sent:
    /// their row cannot be written (the user is gone), and that must not cost anyone else a second email —
    /// the others' outcomes are written (a failed group is retried row by row), the fan-out runs again
    /// and finds nobody left to send to, and the erased member keeps no row.
    @Test func aMemberErasedWhileTheirEmailIsSentCostsNoOneElseASecondEmail() async throws {
        let transport = GatedTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            let draining = Task { try await t.app.deps.worker.drain() }
            // All three emails are with the relay before any outcome is written.
            while await transport.waiting < 3 { try await Task.sleep(for: .milliseconds(5)) }
            #expect(try await t.deliveries(stream).isEmpty, "no row before the outcome")
            let erased = try await t.send(.DELETE, "api/admin/users/m2", bearer: t.admin)
            #expect(erased.status == .ok)
            await transport.open()
            try await draining.value
            t.setNow(t.start.addingTimeInterval(600)) // past the fan-out's retry backoff
            try await t.drainWorker()
            let rows = Dictionary(uniqueKeysWithValues: try await t.deliveries(stream).map { ($0.recipientID, $0) })
            #expect(Set(rows.keys) == ["m1", "both"] && rows.values.allSatisfy { $0.status == Delivery.Status.sent })
            let sent = await transport.sent.compactMap { $0.to.first?.address }
            #expect(sent.sorted() == ["both@example.com", "m1@example.com", "m2@example.com"], "each once: \(sent)")
            let job = try #require(try await Job.query(on: t.app.db).filter(\.$kind == .fanout).first())
            #expect(job.status == .done)
        }
    }

    /// A fan-out run that lost its job's lease (another worker took the job over after it expired) stops:
    /// what its worker has not started is taken back and never sent by it; only the email in flight goes out.
    @Test func aFanOutThatLostItsLeaseTakesBackWhatItsWorkerHasNotStarted() async throws {
        let transport = GatedTransport()
        try await TestApp.run(mailTransport: transport, adjust: { $0.worker.maxInFlight = 1 }) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            let draining = Task { try await t.app.deps.worker.drain() }
            while await transport.waiting < 1 { try await Task.sleep(for: .milliseconds(5)) }
            #expect((t.app.deps.worker.local?.count ?? 0) > 0, "the rest of the page waits in the worker")
            // Another worker took the job over.
            let sql = t.app.db as! any SQLDatabase
            try await sql.update(Job.schema).set("locked_by", to: SQLBind("another-worker")).where("kind", .equal, SQLBind(JobKind.fanout.rawValue)).run()
            // The run checks its lease at least every 2 s while it waits, and takes back what its worker has not started.
            let takenBack = try await DeliveryResilienceTests.waitUntil(timeout: 60) { (t.app.deps.worker.local?.count ?? 0) == 0 }
            #expect(takenBack, "the worker still holds \(t.app.deps.worker.local?.count ?? 0) rows of a run that lost its lease")
            await transport.open()
            try await draining.value
            #expect(await transport.sent.count == 1, "only the email in flight")
            #expect(try await t.deliveries(stream).count == 1)
            let job = try #require(try await Job.query(on: t.app.db).filter(\.$kind == .fanout).first())
            #expect(job.lockedBy == "another-worker" && job.status == .running, "the other worker's job is left alone")
        }
    }

    /// A process that dies after sending part of a fan-out: its job's lease expires, the job runs again,
    /// and only members with no row are sent to.
    @Test func aFanOutRunAgainSendsOnlyToMembersWithoutARow() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            // m1's email went out and was recorded before the crash; the job is still leased to the dead process.
            let sql = t.app.db as! any SQLDatabase
            let id = try await DeliveryIDs.reserve(1, on: t.app.db)[0]
            try await sql.raw("""
                INSERT INTO deliveries (id, stream_id, kind, recipient_id, revision, status, run_at, attempts, created_at, updated_at)
                VALUES (\(bind: id), \(bind: stream), 'live_now', 'm1', 0, 'sent', \(bind: t.start), 1, \(bind: t.start), \(bind: t.start))
                """).run()
            try await sql.update(Job.schema).set("status", to: SQLBind("running")).set("locked_by", to: SQLBind("dead-worker"))
                .set("locked_until", to: SQLBind(t.start.addingTimeInterval(60))).set("attempts", to: SQLBind(1))
                .where("kind", .equal, SQLBind(JobKind.fanout.rawValue)).run()
            try await t.app.deps.worker.drain()
            #expect(await transport.sent.isEmpty) // the job's lease still holds
            t.setNow(t.start.addingTimeInterval(61))
            try await t.drainWorker()
            #expect(await transport.sent.compactMap { $0.to.first?.address }.sorted() == ["both@example.com", "m2@example.com"])
            let rows = try await t.deliveries(stream)
            #expect(rows.count == 3 && rows.allSatisfy { $0.status == Delivery.Status.sent })
            #expect(rows.first { $0.recipientID == "m1" }?.id == id)
        }
    }

    @Test func withoutARelayDeliveriesWait() async throws {
        try await TestApp.run(adjust: { $0.mail.transport = .disabled }) { t in
            try await Self.seedAudience(t)
            let stream = try await t.createStream(scheduled: false)
            try await t.drainWorker()
            let rows = try await t.deliveries(stream)
            #expect(rows.count == 3 && rows.allSatisfy { $0.status == Delivery.Status.queued })
            let ready = try await t.send(.GET, "ready")
            #expect(ready.status == .ok && ready.json["email"] as? String == "disabled")
            #expect((ready.json["warnings"] as? [String])?.isEmpty == false)
        }
    }
}

@Suite struct TimeFormattingTests {
    @Test(arguments: [
        (1_772_955_000, "America/New_York", "March 8, 2026 at 3:30 AM EDT"),
        (1_772_951_400, "America/New_York", "March 8, 2026 at 1:30 AM EST"),
        (1_772_955_000, "Asia/Kolkata", "March 8, 2026 at 1:00 PM IST"),
        (1_772_955_000, "Asia/Kathmandu", "March 8, 2026 at 1:15 PM GMT+5:45"),
        (1_772_955_000, "Europe/London", "March 8, 2026 at 7:30 AM GMT"),
        (1_782_000_000, "Europe/London", "June 21, 2026 at 1:00 AM BST"),
        (1_772_955_000, "Australia/Sydney", "March 8, 2026 at 6:30 PM AEDT"),
        (1_772_955_000, "UTC", "March 8, 2026 at 7:30 AM UTC"),
        (1_772_955_000, "America/St_Johns", "March 8, 2026 at 5:00 AM NDT"),
        (1_772_940_000, "America/St_Johns", "March 7, 2026 at 11:50 PM NST"),
        (1_772_955_000, "Europe/Dublin", "March 8, 2026 at 7:30 AM GMT"),
        (1_782_000_000, "Europe/Dublin", "June 21, 2026 at 1:00 AM IST"),
    ] as [(Int, String, String)])
    func formats(epoch: Int, zone: String, expected: String) {
        #expect(TimeFormatting.format(Date(timeIntervalSince1970: TimeInterval(epoch)), zoneID: zone) == expected)
    }

    @Test func lordHoweHalfHourDST() {
        // +11:00 in (southern) summer, +10:30 in winter: offset labels, right either way.
        let summer = TimeFormatting.format(Date(timeIntervalSince1970: 1_772_955_000), zoneID: "Australia/Lord_Howe")
        let winter = TimeFormatting.format(Date(timeIntervalSince1970: 1_782_000_000), zoneID: "Australia/Lord_Howe")
        #expect(summer.hasPrefix("March 8, 2026 at 6:30 PM "))
        #expect(winter.hasPrefix("June 21, 2026 at 10:30 AM "))
    }
}

/// Cross-check against Python's zoneinfo over many zones and dates around DST changes.
@Suite(.enabled(if: ZoneOracle.available, "needs the Python venv (scripts/test)"))
struct TimeFormattingOracleTests {
    @Test func matchesZoneinfo() async throws {
        let zones = ["America/New_York", "America/Los_Angeles", "America/Chicago", "America/Denver", "America/Phoenix", "America/St_Johns",
                     "America/Sao_Paulo", "America/Mexico_City", "America/Halifax", "Europe/London", "Europe/Dublin", "Europe/Paris",
                     "Europe/Berlin", "Europe/Moscow", "Europe/Istanbul", "Africa/Lagos", "Africa/Johannesburg", "Africa/Abidjan",
                     "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo", "Asia/Shanghai", "Asia/Dubai", "Asia/Singapore", "Asia/Jerusalem",
                     "Asia/Tehran", "Australia/Sydney", "Australia/Adelaide", "Australia/Lord_Howe", "Australia/Perth",
                     "Pacific/Auckland", "Pacific/Chatham", "Pacific/Honolulu", "UTC"]
        // Around 2026's DST switches (US Mar 8 / Nov 1, EU Mar 29 / Oct 25, AU Apr 5 / Oct 4) plus a spread.
        var epochs: [Int] = [1_772_940_000, 1_772_958_000, 1_774_746_000, 1_774_760_000, 1_775_350_000, 1_775_370_000,
                             1_791_050_000, 1_791_070_000, 1_792_880_000, 1_792_900_000, 1_793_500_000, 1_793_530_000]
        epochs += (0..<12).map { 1_767_225_600 + $0 * 2_629_800 + 1_234 }
        let cases = zones.flatMap { zone in epochs.map { (epoch: $0, zone: zone) } }
        let answers = try await ZoneOracle.format(cases)
        #expect(answers.count == cases.count)
        for (c, answer) in zip(cases, answers) {
            let ours = TimeFormatting.format(Date(timeIntervalSince1970: TimeInterval(c.epoch)), zoneID: c.zone)
            #expect(ours == ZoneOracle.expected(answer), "\(c.zone) @ \(c.epoch): \(answer.tzname)")
        }
    }
}
