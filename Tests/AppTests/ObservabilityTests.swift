import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

@Suite struct ObservabilityTests {
    @Test func requestIDIsAcceptedOrGeneratedAndAlwaysReturned() async throws {
        try await TestApp.run { t in
            let given = try await t.send(.GET, "health", headers: ["X-Request-ID": "frontend-42.a_b"])
            #expect(given.headers.first(name: "X-Request-ID") == "frontend-42.a_b")
            let generated = try await t.send(.GET, "api/nope")
            let id = try #require(generated.headers.first(name: "X-Request-ID"))
            #expect(UUID(uuidString: id) != nil)
            #expect(generated.status == .notFound && generated.errorCode == "not_found")
            // Log injection or oversized ids are replaced, not echoed.
            for bad in ["two words", String(repeating: "a", count: 129), "x\u{1b}[31m"] {
                let r = try await t.send(.GET, "health", headers: ["X-Request-ID": bad])
                #expect(r.headers.first(name: "X-Request-ID") != bad)
                #expect(UUID(uuidString: r.headers.first(name: "X-Request-ID") ?? "") != nil)
            }
            // Errors raised before any route (wrong method) carry it too.
            let wrongMethod = try await t.send(.DELETE, "health", headers: ["X-Request-ID": "req-405"])
            #expect(wrongMethod.status == .methodNotAllowed && wrongMethod.headers.first(name: "X-Request-ID") == "req-405")
        }
    }

    @Test func metricsCountRequestsByRoutePatternEmailsAndQueues() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.send(.POST, "api/admin/import", bearer: t.admin, json: ["users": [], "follows": [
                ["followerId": "m1", "followedId": "creator"], ["followerId": "m2", "followedId": "creator"],
            ]])
            let stream = try await t.createStream(scheduled: false) // live now: two emails queued
            let member = try await t.token("m1")
            for _ in 0..<3 { #expect(try await t.send(.GET, "api/streams/\(stream)/token", bearer: member).status == .ok) }
            #expect(try await t.send(.GET, "api/streams/\(stream)/token").status == .unauthorized)

            var text = try await t.send(.GET, "metrics")
            #expect(text.status == .ok)
            #expect(text.headers.contentType?.description.hasPrefix("text/plain") == true)
            #expect(text.raw.contains(#"http_requests_total{method="GET",route="/api/streams/:streamId/token",status="200"} 3"#), "\(text.raw)")
            #expect(text.raw.contains(#"http_requests_total{method="GET",route="/api/streams/:streamId/token",status="401"} 1"#))
            #expect(!text.raw.contains(stream), "raw paths (ids) must not become labels")
            #expect(text.raw.contains("http_request_duration_seconds_bucket{"))
            // The fan-out job is due: one job waiting.
            #expect(text.raw.contains(#"queue_depth{queue="jobs"} 1"#), "\(text.raw)")

            // Run the queue: fan-out, then both emails (the test transport is the dev outbox).
            for _ in 0..<3 { try await t.app.deps.worker.drain() }
            text = try await t.send(.GET, "metrics")
            #expect(text.raw.contains(#"emails_total{kind="live_now",status="sent"} 2"#), "\(text.raw)")
            #expect(text.raw.contains(#"queue_depth{queue="deliveries"} 0"#))
        }
    }

    @Test func readyNamesWhatIsMissing() async throws {
        // The worker is expected inside this process but not running: not ready.
        try await TestApp.run(adjust: { $0.worker.runInServe = true }) { t in
            let r = try await t.send(.GET, "ready")
            #expect(r.status == .serviceUnavailable)
            #expect(r.json["worker"] as? String == "stopped" && r.json["status"] as? String == "unavailable")
            let worker = t.app.deps.worker
            let task = Task { await worker.run() }
            var running = false
            for _ in 0..<100 where !running { try await Task.sleep(for: .milliseconds(20)); running = worker.isRunning }
            let ok = try await t.send(.GET, "ready")
            #expect(ok.status == .ok, "\(ok.raw)")
            #expect(ok.json["worker"] as? String == "running" && ok.json["migrations"] as? String == "applied")
            worker.stop()
            await task.value
        }
        // A migration not recorded as applied: not ready.
        try await TestApp.run { t in
            try await (t.app.db as! any SQLDatabase).raw("DELETE FROM _fluent_migrations WHERE name = \(bind: Migrations.all.last!.name)").run()
            let r = try await t.send(.GET, "ready")
            #expect(r.status == .serviceUnavailable)
            #expect(r.json["migrations"] as? String == "pending")
            #expect(r.json["worker"] as? String == "external")
        }
    }
}

@Suite struct RedactionTests {
    @Test func credentialsEmailsAndTokensAreScrubbed() {
        let head = #"HTTPRequestHead { uri: "/api/unsubscribe/abc.DEF-123", headers: Authorization: Bearer eyJhbGciOi.x.y; Agora-Signature-V2: 9f86d0; Host: h }"#
        let out = Redaction.scrub(head)
        #expect(!out.contains("eyJhbGciOi") && !out.contains("9f86d0") && !out.contains("abc.DEF-123"), "\(out)")
        #expect(out.contains("Host: h"))
        #expect(Redaction.scrub("sent to jane.doe+fit@example.co.uk") == "sent to ***@example.co.uk")
        #expect(Redaction.scrub("https://b.s3.amazonaws.com/k?X-Amz-Signature=deadbeef&x=1").contains("X-Amz-Signature=[redacted]&x=1"))
        #expect(Redaction.scrub("GET /api/streams/live 200") == "GET /api/streams/live 200")
        let meta = Redaction.scrub(["binds": .array([.string("a@b.com")]), "sql": .string("SELECT 1"), "ok": .string("x@y.org")])
        #expect(meta["binds"] == .string("[redacted]") && meta["sql"] == .string("SELECT 1") && meta["ok"] == .string("***@y.org"))
    }
}
