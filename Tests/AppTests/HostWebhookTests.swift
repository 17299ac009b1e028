import Fluent
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 20: signed webhooks to the host platform — outbox, signatures, retries, ordering,
/// circuit breaker, SSRF guard, replay and the event log.
@Suite struct HostWebhookTests {
    static func allowPrivate(_ c: inout AppConfig) {
        c.webhooks.allowPrivateURLs = true
        c.webhooks.disableAfterFailures = 3
        // Generous: on a loaded machine (the whole suite in parallel) a local receiver's answer can take
        // seconds, and a timed-out send is retried — a duplicate the ordering tests would count.
        c.webhooks.timeoutSeconds = 15
    }

    /// For endpoints where nothing listens: a refused connection is retried by the HTTP client until
    /// the timeout, so keep attempts short there.
    static func deadEndpoint(_ c: inout AppConfig) {
        allowPrivate(&c)
        c.webhooks.timeoutSeconds = 1
    }

    static func endpoint(_ t: TestApp, url: String, events: [String]? = nil) async throws -> (id: String, secret: String) {
        var body: [String: Any] = ["url": url, "description": "host platform"]
        if let events { body["events"] = events }
        let r = try await t.send(.POST, "api/admin/webhooks", bearer: t.admin, json: body)
        #expect(r.status == .created, "\(r.raw.prefix(300))")
        let hook = r.json["webhook"] as? [String: Any] ?? [:]
        return (hook["id"] as? String ?? "", hook["secret"] as? String ?? "")
    }

    @Test(.enabled(if: WebhookOracle.available)) func signaturesVerifyWithStandardWebhooksAcrossARotation() async throws {
        let receiver = try await WebhookReceiver.start()
        // Real clock: the library checks webhook-timestamp against the time now.
        try await TestApp.run(realClock: true, adjust: Self.allowPrivate) { t in
            try await t.seedBasics()
            let (id, secret) = try await Self.endpoint(t, url: receiver.url)
            #expect(secret.hasPrefix("whsec_") && (Data(base64Encoded: String(secret.dropFirst(6)))?.count ?? 0) >= 24)
            let listed = try await t.send(.GET, "api/admin/webhooks/\(id)", bearer: t.admin)
            #expect(listed.status == .ok && (listed.json["webhook"] as? [String: Any])?["secret"] == nil, "the secret is shown once")
            let stream = try await t.createStream(start: Date().addingTimeInterval(7200))
            try await t.app.deps.webhooks.drain()
            let first = try #require(receiver.delivered.first)
            #expect(first.json["type"] as? String == "stream.scheduled" && first.sequence == 1)
            #expect((first.json["timestamp"] as? String)?.hasSuffix("Z") == true)
            #expect(((first.json["data"] as? [String: Any])?["streamId"] as? String) == stream)
            #expect(first.id.hasPrefix("msg_") && Int(first.headers["webhook-timestamp"] ?? "") != nil)

            let rotated = try await t.send(.POST, "api/admin/webhooks/\(id)/rotate-secret", bearer: t.admin)
            let newSecret = try #require((rotated.json["webhook"] as? [String: Any])?["secret"] as? String)
            #expect(newSecret != secret && (rotated.json["webhook"] as? [String: Any])?["previousSecretExpiresAt"] as? String != nil)
            #expect(try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: try await t.token("creator"), json: ["isLive": true]).status == .ok)
            try await t.app.deps.webhooks.drain()
            let second = try #require(receiver.delivered.last)
            #expect(second.json["type"] as? String == "stream.live" && second.sequence == 2)
            #expect(second.headers["webhook-signature"]?.split(separator: " ").count == 2, "both secrets sign during the overlap")
            var tampered = first.headers
            tampered["webhook-id"] = "msg_other"
            let results = try await WebhookOracle.verify([
                (secret, first.headers, first.body),                         // before the rotation
                (secret, second.headers, second.body),                       // the old secret still verifies during the overlap
                (newSecret, second.headers, second.body),                    // and the new one
                (newSecret, first.headers, first.body),                      // the new secret did not sign the first
                (secret, first.headers, first.body.replacingOccurrences(of: "stream.scheduled", with: "stream.cancelled")), // tampered body
                (secret, tampered, first.body),                              // tampered id
            ])
            #expect(results.count == 6)
            #expect(results[0] as? Bool == true && results[1] as? Bool == true && results[2] as? Bool == true, "\(results)")
            #expect(results[3] as? Bool != true && results[4] as? Bool != true && results[5] as? Bool != true, "\(results)")
        }
        try await receiver.stop()
    }

    /// A receiver that fails the first attempt of every third event: retries with backoff (an
    /// injected clock, no sleeping), the same webhook-id on the retry, and one stream's events
    /// delivered in order.
    @Test func retriesKeepTheIdAndOneStreamsEventsArriveInOrder() async throws {
        let count = NIOLockedInt()
        let receiver = try await WebhookReceiver.start { _, attempt in
            if attempt > 1 { return .ok }
            return count.next() % 3 == 0 ? .serviceUnavailable : .ok
        }
        try await TestApp.run(adjust: Self.allowPrivate) { t in
            try await t.seedBasics()
            let (id, _) = try await Self.endpoint(t, url: receiver.url, events: ["stream.scheduled", "stream.rescheduled", "stream.live", "stream.ended"])
            let creator = try await t.token("creator")
            let stream = try await t.createStream(start: t.start.addingTimeInterval(86_400))
            for i in 1...6 {
                let r = try await t.send(.PATCH, "api/creator/streams/\(stream)", bearer: creator,
                                         json: ["startTime": ISO8601.string(t.start.addingTimeInterval(86_400 + Double(i) * 600))])
                #expect(r.status == .ok)
            }
            #expect(try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: creator, json: ["isLive": true]).status == .ok)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: creator, json: [:]).status == .ok)
            for _ in 0..<40 {
                try await t.app.deps.webhooks.drain()
                if receiver.delivered.contains(where: { $0.sequence == 9 }) { break }
                t.setNow(t.app.deps.clock.now().addingTimeInterval(60))
            }
            let delivered = receiver.delivered
            #expect(delivered.compactMap(\.sequence) == Array(1...9), "\(delivered.compactMap(\.sequence))")
            #expect(delivered.map { $0.json["type"] as? String ?? "" } == ["stream.scheduled"] + Array(repeating: "stream.rescheduled", count: 6) + ["stream.live", "stream.ended"])
            // Every failed first attempt came back with the same id, and nothing overtook it.
            let failed = receiver.requests.filter { $0.status >= 500 }
            #expect(failed.count == 3 && failed.allSatisfy { f in delivered.contains { $0.id == f.id && $0.attempt == 2 } })
            let ended = try #require(delivered.last?.json["data"] as? [String: Any])
            #expect(ended["reason"] as? String == "creator")
            let log = try await t.send(.GET, "api/admin/webhooks/\(id)/deliveries", bearer: t.admin)
            let rows = log.json["deliveries"] as? [[String: Any]] ?? []
            #expect(rows.count == 9 && rows.filter { $0["attempts"] as? Int == 2 }.count == 3 && rows.allSatisfy { $0["status"] as? String == "delivered" })
            #expect(rows.first { $0["attempts"] as? Int == 2 }?["lastStatusCode"] as? Int == 200)
        }
        try await receiver.stop()
    }

    /// stream.viewers: at most one a minute per live stream, carrying the exact count (NCS joins and
    /// leaves moved it through the member row's trigger); events in between do not ask again.
    @Test func viewersEventAtMostOnceAMinuteWithTheExactCount() async throws {
        let receiver = try await WebhookReceiver.start()
        try await TestApp.run(adjust: { Self.allowPrivate(&$0); $0.ncsSecret = WebhookTests.secret }) { t in
            try await t.seedBasics()
            _ = try await Self.endpoint(t, url: receiver.url, events: ["stream.viewers"])
            let stream = try await t.createStream(scheduled: false)
            var notice = 0
            func ncs(_ type: Int, uid: Int64, seq: Int64) async throws {
                notice += 1
                let r = try await WebhookTests.post(t, WebhookTests.event("v-\(notice)", type, channel: stream, uid: uid, seq: seq))
                #expect(r.status == .ok && r.json["duplicate"] as? Bool == false, "\(r.raw.prefix(200))")
            }
            func counts() async throws -> [Int] {
                try await t.app.deps.webhooks.drain()
                return receiver.delivered.map { (($0.json["data"] as? [String: Any])?["viewerCount"] as? Int) ?? -1 }
            }
            try await ncs(105, uid: 7001, seq: 1)                       // the first join: due at once
            #expect(try await counts() == [1])
            for uid in Int64(7002)...7005 { try await ncs(105, uid: uid, seq: 1) }
            try await ncs(111, uid: 7005, seq: 2)                       // on stage: not a viewer
            t.setNow(t.app.deps.clock.now().addingTimeInterval(59))
            try await ncs(106, uid: 7002, seq: 2)                       // leaves
            #expect(try await counts() == [1], "not twice within a minute")
            t.setNow(t.app.deps.clock.now().addingTimeInterval(2))
            try await ncs(112, uid: 7005, seq: 3)                       // back to the audience
            #expect(try await counts() == [1, 4], "7001, 7003, 7004, 7005")
            #expect(try await LiveStream.find(stream, on: t.app.db)?.viewerCount == 4)
        }
        try await receiver.stop()
    }

    @Test func goneDisablesTheEndpointAndRepeatedFailuresTripTheBreaker() async throws {
        // Live receivers get the generous timeout (a 410 that timed out would be retried); the failing
        // one answers 500 rather than being a dead port, so no send depends on a short timeout.
        let gone = try await WebhookReceiver.start { _, _ in .gone }
        let failing = try await WebhookReceiver.start { _, _ in .internalServerError }
        try await TestApp.run(adjust: Self.allowPrivate) { t in
            try await t.seedBasics()
            let (goneID, _) = try await Self.endpoint(t, url: gone.url)
            let (deadID, _) = try await Self.endpoint(t, url: failing.url)
            _ = try await t.createStream()
            for _ in 0..<10 {
                try await t.app.deps.webhooks.drain()
                t.setNow(t.app.deps.clock.now().addingTimeInterval(3600))
            }
            let g = try await t.send(.GET, "api/admin/webhooks/\(goneID)", bearer: t.admin).json["webhook"] as? [String: Any] ?? [:]
            #expect(g["enabled"] as? Bool == false && (g["disabledReason"] as? String)?.contains("410") == true)
            #expect(gone.requests.count == 1, "a 410 is not retried")
            let d = try await t.send(.GET, "api/admin/webhooks/\(deadID)", bearer: t.admin).json["webhook"] as? [String: Any] ?? [:]
            #expect(d["enabled"] as? Bool == false && d["consecutiveFailures"] as? Int == 3, "\(d)")
            let ready = try await t.send(.GET, "ready")
            let disabled = ((ready.json["webhooks"] as? [String: Any])?["disabled"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            #expect(Set(disabled) == [goneID, deadID])
            // Enabled again: the breaker closes; the waiting delivery goes (to a receiver that now works).
            let fixed = try await WebhookReceiver.start()
            let patched = try await t.send(.PATCH, "api/admin/webhooks/\(deadID)", bearer: t.admin, json: ["url": fixed.url, "enabled": true])
            #expect((patched.json["webhook"] as? [String: Any])?["consecutiveFailures"] as? Int == 0)
            t.setNow(t.app.deps.clock.now().addingTimeInterval(4 * 3600))
            try await t.app.deps.webhooks.drain()
            #expect(fixed.delivered.count == 1)
            try await fixed.stop()
        }
        try await gone.stop()
        try await failing.stop()
    }

    @Test func eventsPastTheRetryWindowAreGivenUp() async throws {
        try await TestApp.run(adjust: { Self.deadEndpoint(&$0); $0.webhooks.disableAfterFailures = 1000; $0.webhooks.retryWindow = 6 * 3600 }) { t in
            try await t.seedBasics()
            let (id, _) = try await Self.endpoint(t, url: "http://127.0.0.1:9/hook")
            _ = try await t.createStream()
            for _ in 0..<9 {
                try await t.app.deps.webhooks.drain()
                t.setNow(t.app.deps.clock.now().addingTimeInterval(3600))
            }
            let rows = try await t.send(.GET, "api/admin/webhooks/\(id)/deliveries?status=dead", bearer: t.admin).json["deliveries"] as? [[String: Any]] ?? []
            #expect(rows.count == 1 && (rows.first?["attempts"] as? Int ?? 0) > 5, "\(rows)")
        }
    }

    /// The outbox: an event row exists exactly when the change committed.
    @Test func anEventIsRecordedIffItsChangeCommits() async throws {
        try await TestApp.run(adjust: Self.allowPrivate) { t in
            try await t.seedBasics()
            let stream = try await t.createStream()
            struct Boom: Error {}
            await #expect(throws: Boom.self) {
                try await t.app.db.writeTransaction { tx in
                    try await tx.sql.raw("UPDATE streams SET title = 'changed' WHERE id = \(bind: stream)").run()
                    let s = try #require(try await LiveStream.find(stream, on: tx))
                    try await WebhookOutbox.stream(.streamRescheduled, s, now: t.app.deps.clock.now(), on: tx)
                    throw Boom()
                }
            }
            struct N: Decodable { let n: Int }
            let events = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_events WHERE stream_id = \(bind: stream)").first(decoding: N.self)?.n
            #expect(events == 1, "only stream.scheduled, from the create that committed")
            #expect(try await LiveStream.find(stream, on: t.app.db)?.title == "Morning HIIT")
            // A cancel that commits records its event.
            _ = try await t.send(.POST, "api/creator/streams/\(stream)/cancel", bearer: try await t.token("creator"))
            let after = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_events WHERE stream_id = \(bind: stream)").first(decoding: N.self)?.n
            #expect(after == 2)
        }
    }

    @Test func theEventLogReplayAndFilters() async throws {
        let receiver = try await WebhookReceiver.start()
        try await TestApp.run(adjust: Self.allowPrivate) { t in
            try await t.seedBasics()
            let (id, _) = try await Self.endpoint(t, url: receiver.url, events: ["stream.cancelled"])
            let creator = try await t.token("creator")
            let a = try await t.createStream(), b = try await t.createStream()
            _ = try await t.send(.POST, "api/creator/streams/\(a)/cancel", bearer: creator)
            _ = try await t.send(.POST, "api/creator/streams/\(b)/cancel", bearer: creator)
            try await t.app.deps.webhooks.drain()
            #expect(receiver.delivered.count == 2 && receiver.delivered.allSatisfy { $0.json["type"] as? String == "stream.cancelled" })
            // Poll: every event, cursor-paginated, the same bodies.
            let page1 = try await t.send(.GET, "api/admin/events?limit=3", bearer: t.admin)
            let events1 = page1.json["events"] as? [[String: Any]] ?? []
            #expect(events1.count == 3 && page1.json["nextCursor"] as? String != nil)
            let page2 = try await t.send(.GET, "api/admin/events?limit=3&cursor=\(page1.json["nextCursor"] as! String)", bearer: t.admin)
            let all = events1 + (page2.json["events"] as? [[String: Any]] ?? [])
            #expect(all.count == 4 && page2.json["nextCursor"] is NSNull)
            let cancelled = try await t.send(.GET, "api/admin/events?type=stream.cancelled", bearer: t.admin).json["events"] as? [[String: Any]] ?? []
            #expect(Set(cancelled.compactMap { $0["id"] as? String }) == Set(receiver.delivered.map(\.id)))
            #expect((cancelled.first?["body"] as? [String: Any])?["type"] as? String == "stream.cancelled")
            #expect(try await t.send(.GET, "api/admin/events?type=nope", bearer: t.admin).status == .badRequest)
            // Replay: the same ids again.
            let replay = try await t.send(.POST, "api/admin/webhooks/\(id)/replay", bearer: t.admin, json: ["since": ISO8601.string(t.start.addingTimeInterval(-60))])
            #expect(replay.status == .ok && replay.json["queued"] as? Int == 2, "\(replay.raw)")
            try await t.app.deps.webhooks.drain()
            #expect(receiver.delivered.count == 4 && Set(receiver.delivered.map(\.id)).count == 2)
            #expect(try await t.send(.DELETE, "api/admin/webhooks/\(id)", bearer: t.admin).json["deleted"] as? Bool == true)
            #expect(try await t.send(.GET, "api/admin/webhooks/\(id)", bearer: t.admin).status == .notFound)
        }
        try await receiver.stop()
    }

    @Test func theSSRFGuardRefusesEveryInwardAddress() async throws {
        for address in ["127.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
                        "::1", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::"] {
            #expect(!URLGuard.isPublic(address), "\(address)")
        }
        for address in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] { #expect(URLGuard.isPublic(address), "\(address)") }
        // Production settings: https only, and the host must resolve to public addresses.
        try await TestApp.run { t in
            for url in ["https://127.0.0.1/hook", "https://localhost/hook", "https://169.254.169.254/latest/meta-data", "https://[::1]/x",
                        "https://10.0.0.5/x", "http://example.com/hook", "ftp://example.com/x", "https://user:pw@example.com/x", "not a url"] {
                let r = try await t.send(.POST, "api/admin/webhooks", bearer: t.admin, json: ["url": url])
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "\(url): \(r.raw.prefix(200))")
            }
            // A URL that pointed outward when saved but resolves inward at send time is refused then.
            try await t.seedBasics()
            let now = t.app.deps.clock.now()
            try await t.app.db.sql.raw("""
                INSERT INTO webhook_endpoints (id, url, events, enabled, secret, consecutive_failures, created_at, updated_at)
                VALUES ('wh_rebound', 'https://localhost:1/hook', '', \(bind: true), \(bind: WebhookSigner.newSecret()), 0, \(bind: now), \(bind: now))
                """).run()
            _ = try await t.createStream()
            try await t.app.deps.webhooks.drain()
            struct Row: Decodable { let status: String; let last_error: String? }
            let row = try await t.app.db.sql.raw("SELECT status, last_error FROM webhook_deliveries WHERE endpoint_id = 'wh_rebound'").first(decoding: Row.self)
            #expect(row?.status == "queued" && row?.last_error?.contains("non-public address") == true, "\(String(describing: row))")
        }
    }
}

/// A counter shared with the receiver's handler.
final class NIOLockedInt: Sendable {
    private let box = NIOLockedValueBox(0)
    func next() -> Int { box.withLockedValue { $0 += 1; return $0 } }
}

/// kill -9 of `App worker` while webhooks are in flight: after a restart every event arrives,
/// and the only duplicates are what was in flight (each with its event's webhook-id).
@Suite(.serialized, .enabled(if: MailPeers.available && ProcessInfo.processInfo.environment["APP_BINARY"] != nil,
                            "needs APP_BINARY and the SMTP peers (scripts/test provides both)"))
struct HostWebhookCrashTests {
    @Test func killDashNineMidDeliveryLosesNoEvent() async throws {
        let receiver = try await WebhookReceiver.start(delayMilliseconds: 200)
        let events = 80
        try await TestApp.run(realClock: true, fileDatabase: true, adjust: HostWebhookTests.allowPrivate) { t in
            try await t.seedBasics()
            _ = try await HostWebhookTests.endpoint(t, url: receiver.url, events: ["stream.scheduled"])
            for i in 0..<events { _ = try await t.createStream(start: Date().addingTimeInterval(Double(3600 + i))) }
            let env = try AppProcess.environment(database: t.app.deps.config.database,
                                                 extra: ["WEBHOOK_ALLOW_PRIVATE_URLS": "true", "WEBHOOK_TIMEOUT_SECONDS": "15"])
            // A 15 s timeout (not 2 or 5): on a loaded machine (the whole suite in parallel) a 200 ms answer
            // can take seconds, and a timed-out send is retried — a duplicate that is not the crash's.
            let first = try AppProcess.start(["worker"], environment: env)
            let underWay = try await DeliveryResilienceTests.waitUntil(timeout: 120) { receiver.delivered.count >= 10 || !first.isRunning }
            #expect(underWay && first.isRunning, "the first worker never got going")
            kill(first.processIdentifier, SIGKILL)
            _ = await AppProcess.exited(first)
            let atKill = Set(receiver.delivered.map(\.id)).count
            #expect(atKill < events, "killed too late to prove anything")
            // The killed worker's leases expire (timeout × 3 + 30 s), then the next one takes them over.
            let second = try AppProcess.start(["worker"], environment: env)
            struct N: Decodable { let n: Int }
            func pending() async throws -> Int {
                try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status <> 'delivered'").first(decoding: N.self)?.n ?? -1
            }
            // What the killed worker had in flight may have reached the receiver already; its rows are
            // sent again once their lease expires (the duplicates, same webhook-id).
            let done = try await DeliveryResilienceTests.waitUntil(timeout: 300) {
                Set(receiver.delivered.map(\.id)).count == events ? try await pending() == 0 : false
            }
            second.terminate()
            _ = await AppProcess.exited(second)
            #expect(done, "\(Set(receiver.delivered.map(\.id)).count) of \(events) events arrived")
            let ids = receiver.requests.map(\.id)
            let duplicates = ids.count - Set(ids).count
            #expect(duplicates <= 8, "\(duplicates) duplicates; at most the in-flight window (8)")
            #expect(try await pending() == 0)
            print("webhook crash test: \(duplicates) duplicate(s) after SIGKILL")
        }
        try await receiver.stop()
    }
}
