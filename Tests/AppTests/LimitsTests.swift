import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct LimitsTests {
    @Test func wrongMethodIs405WithAllow() async throws {
        try await TestApp.run { t in
            let r = try await t.send(.DELETE, "health")
            #expect(r.status == .methodNotAllowed && r.errorCode == "method_not_allowed" && r.json["success"] as? Bool == false)
            #expect(r.headers.first(name: .allow) == "GET, HEAD")
            let p = try await t.send(.GET, "api/creator/streams/abc/stop")
            #expect(p.status == .methodNotAllowed && p.headers.first(name: .allow) == "POST")
            #expect(try await t.send(.GET, "api/nothing").status == .notFound)
        }
    }

    @Test func tokenRequestsPerUserPerMinute() async throws {
        try await TestApp.run(adjust: { $0.rateLimits.tokenPerMinute = 5 }) { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let m1 = try await t.token("m1")
            for _ in 0..<5 { #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: m1).status == .ok) }
            let limited = try await t.send(.GET, "api/streams/\(id)/token", bearer: m1)
            #expect(limited.status == .tooManyRequests && limited.errorCode == "rate_limited")
            #expect(Int(limited.headers.first(name: .retryAfter) ?? "") == 60)
            // Another user has their own budget; the window resets with the (injected) clock.
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m2")).status == .ok)
            t.setNow(t.start.addingTimeInterval(60))
            #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: try await t.token("m1")).status == .ok)
        }
    }

    @Test func notifyImportAndUnsubscribeLimitsAndTheSwitch() async throws {
        try await TestApp.run(adjust: { $0.rateLimits.notifyPerMinute = 2; $0.rateLimits.importPerMinute = 3; $0.rateLimits.unsubscribePerMinute = 2 }) { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let owner = try await t.token("creator")
            for _ in 0..<2 { #expect(try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: owner, json: ["type": "reminder"]).status == .ok) }
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/notify", bearer: owner, json: ["type": "reminder"]).status == .tooManyRequests)
            for _ in 0..<2 { _ = try await t.send(.POST, "api/admin/import", bearer: t.admin, json: ["users": []]) }
            #expect(try await t.send(.POST, "api/admin/import", bearer: t.admin, json: ["users": []]).status == .tooManyRequests)
            for _ in 0..<2 { _ = try await t.send(.GET, "api/unsubscribe/nope") }
            #expect(try await t.send(.GET, "api/unsubscribe/nope").status == .tooManyRequests)
            #expect(try await t.send(.GET, "health").status == .ok) // never limited
        }
        try await TestApp.run(adjust: { $0.rateLimits.enabled = false; $0.rateLimits.tokenPerMinute = 1 }) { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let m1 = try await t.token("m1")
            for _ in 0..<5 { #expect(try await t.send(.GET, "api/streams/\(id)/token", bearer: m1).status == .ok) }
        }
    }
}
