import Foundation
import SigV4
import Testing
import VaporTesting
@testable import App

/// Every registered route × every kind of caller, with the exact status each must get.
@Suite struct AuthMatrixTests {
    enum Caller: String, CaseIterable { case none, otherMember, otherCreator, owner, admin, cron }

    enum Access {
        /// On purpose: health, readiness, metrics, docs, unsubscribe page, .ics feed, dev outbox.
        case open
        /// Any signed-in member or creator.
        case anyUser
        /// Only the creator who owns the stream.
        case owner
        /// Any signed-in creator (acts on their own data).
        case creatorRole
        case admin, cron
        /// Agora's signature header, which no bearer credential replaces.
        case webhook
    }

    struct Case {
        let method: HTTPMethod
        /// {stream}, {creator}, {unsubscribe} are filled in per case.
        let path: String
        let access: Access
        var body: [String: Any]? = nil
        /// What a permitted caller gets.
        let ok: HTTPStatus
    }

    static let cronSecret = "matrix-cron-secret-0123456789"

    static var cases: [Case] { [
        Case(method: .GET, path: "health", access: .open, ok: .ok),
        Case(method: .GET, path: "ready", access: .open, ok: .ok),
        Case(method: .GET, path: "metrics", access: .open, ok: .ok),
        Case(method: .GET, path: "openapi.json", access: .open, ok: .ok),
        Case(method: .GET, path: "docs", access: .open, ok: .ok),
        Case(method: .GET, path: "api/unsubscribe/{unsubscribe}", access: .open, ok: .ok),
        Case(method: .POST, path: "api/unsubscribe/{unsubscribe}", access: .open, ok: .ok),
        Case(method: .GET, path: "api/creator/{creator}/schedule.ics", access: .open, ok: .ok),
        Case(method: .GET, path: "dev/outbox", access: .open, ok: .ok),
        Case(method: .GET, path: "dev/outbox/999999", access: .open, ok: .notFound),
        Case(method: .POST, path: "api/webhooks/agora", access: .webhook, body: ["noticeId": "n1"], ok: .ok),
        Case(method: .POST, path: "api/webhooks/email/{provider}", access: .webhook, body: ["type": "email.delivered"], ok: .ok),
        Case(method: .GET, path: "api/admin/suppressions", access: .admin, ok: .ok),
        Case(method: .DELETE, path: "api/admin/suppressions/{email}", access: .admin, ok: .ok),
        Case(method: .POST, path: "api/streams/{stream}/token/renew", access: .anyUser, body: ["role": "subscriber"], ok: .ok),
        Case(method: .GET, path: "api/streams/{stream}/stage", access: .owner, ok: .ok),
        Case(method: .GET, path: "api/creator/streams/{stream}/attendance", access: .owner, ok: .ok),
        Case(method: .GET, path: "api/creator/streams/{stream}/analytics", access: .owner, ok: .ok),
        Case(method: .GET, path: "api/me/history", access: .anyUser, ok: .ok),
        Case(method: .POST, path: "api/streams/{stream}/rsvp", access: .anyUser, ok: .ok),
        Case(method: .DELETE, path: "api/streams/{stream}/rsvp", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/creator/streams/{stream}/rsvps", access: .owner, ok: .ok),
        Case(method: .POST, path: "api/streams/{stream}/stage/requests", access: .anyUser, ok: .conflict),
        Case(method: .POST, path: "api/streams/{stream}/stage/invite", access: .owner, body: ["userId": "m1"], ok: .conflict),
        Case(method: .POST, path: "api/streams/{stream}/stage/remove", access: .owner, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/cron/trigger-stream-emails", access: .cron, ok: .ok),
        Case(method: .GET, path: "api/cron/check-stream-reminders", access: .cron, ok: .ok),
        Case(method: .POST, path: "api/admin/import", access: .admin, body: ["users": []], ok: .ok),
        Case(method: .PUT, path: "api/admin/users/x1", access: .admin, body: ["name": "X", "email": "x@example.com"], ok: .ok),
        Case(method: .DELETE, path: "api/admin/users/x1", access: .admin, ok: .ok),
        Case(method: .DELETE, path: "api/admin/follows", access: .admin, body: ["followerId": "m1", "followedId": "creator"], ok: .ok),
        Case(method: .GET, path: "api/streams/{stream}/token", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/streams/live", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/streams/{stream}", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/me/upcoming", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/me/notification-preferences", access: .anyUser, ok: .ok),
        Case(method: .PUT, path: "api/me/notification-preferences", access: .anyUser, body: ["reminder": true], ok: .ok),
        Case(method: .GET, path: "api/creator/{creator}/scheduled-streams", access: .anyUser, ok: .ok),
        Case(method: .GET, path: "api/streams/{stream}/replay", access: .anyUser, ok: .notFound),
        Case(method: .POST, path: "api/creator/streams/create", access: .owner,
             body: ["creatorId": "creator", "title": "Matrix", "isScheduled": false], ok: .created),
        Case(method: .POST, path: "api/creator/streams/{stream}/stop", access: .owner, body: [:], ok: .ok),
        Case(method: .PATCH, path: "api/creator/streams/{stream}/status", access: .owner, body: ["isLive": true], ok: .ok),
        Case(method: .PATCH, path: "api/creator/streams/{stream}", access: .owner, body: ["title": "Renamed"], ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/cancel", access: .owner, ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/notify", access: .owner, body: ["type": "scheduled"], ok: .ok),
        Case(method: .GET, path: "api/creator/streams/{stream}/notifications", access: .owner, ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/recording/upload-url", access: .owner, body: ["contentType": "video/mp4"], ok: .ok),
        Case(method: .PUT, path: "api/creator/streams/{stream}/replay", access: .owner,
             body: ["replayUrl": "https://elsewhere.example.com/x.mp4"], ok: .badRequest),
        Case(method: .POST, path: "api/creator/streams/{stream}/recording/start", access: .owner, ok: .conflict),
        Case(method: .POST, path: "api/creator/streams/{stream}/recording/stop", access: .owner, ok: .conflict),
        Case(method: .GET, path: "api/creator/streams/{stream}/recording", access: .owner, ok: .ok),
        Case(method: .GET, path: "api/creator/streams/{stream}/moderation", access: .owner, ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/moderation/block", access: .owner, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/moderation/unblock", access: .owner, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/moderation/mute", access: .owner, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/creator/streams/{stream}/moderation/unmute", access: .owner, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/creator/blocks", access: .creatorRole, body: ["userId": "m1"], ok: .ok),
        Case(method: .POST, path: "api/creator/series", access: .creatorRole, body: seriesBody, ok: .created),
        Case(method: .GET, path: "api/creator/series", access: .creatorRole, ok: .ok),
        Case(method: .GET, path: "api/creator/series/{series}", access: .owner, ok: .ok),
        Case(method: .PATCH, path: "api/creator/series/{series}", access: .owner, body: ["title": "Renamed"], ok: .ok),
        Case(method: .POST, path: "api/creator/series/{series}/skip", access: .owner, body: ["dates": []], ok: .badRequest),
        Case(method: .POST, path: "api/creator/series/{series}/end", access: .owner, ok: .ok),
        Case(method: .POST, path: "api/series/{series}/rsvp", access: .anyUser, ok: .ok),
        Case(method: .DELETE, path: "api/series/{series}/rsvp", access: .anyUser, ok: .ok),
        Case(method: .POST, path: "api/cron/series-top-up", access: .cron, ok: .ok),
        Case(method: .POST, path: "api/admin/webhooks", access: .admin, body: ["url": "https://93.184.216.34/hook"], ok: .created),
        Case(method: .GET, path: "api/admin/webhooks", access: .admin, ok: .ok),
        Case(method: .GET, path: "api/admin/webhooks/x1", access: .admin, ok: .notFound),
        Case(method: .PATCH, path: "api/admin/webhooks/x1", access: .admin, body: ["enabled": false], ok: .notFound),
        Case(method: .DELETE, path: "api/admin/webhooks/x1", access: .admin, ok: .notFound),
        Case(method: .POST, path: "api/admin/webhooks/x1/rotate-secret", access: .admin, ok: .notFound),
        Case(method: .GET, path: "api/admin/webhooks/x1/deliveries", access: .admin, ok: .notFound),
        Case(method: .POST, path: "api/admin/webhooks/x1/replay", access: .admin, body: ["since": "2026-03-01T00:00:00Z"], ok: .notFound),
        Case(method: .GET, path: "api/admin/events", access: .admin, ok: .ok),
        Case(method: .POST, path: "api/me/devices", access: .anyUser,
             body: ["platform": "ios", "token": String(repeating: "ab", count: 32)], ok: .created),
        Case(method: .DELETE, path: "api/me/devices/x1", access: .anyUser, ok: .ok),
        Case(method: .DELETE, path: "api/creator/blocks/m1", access: .creatorRole, ok: .ok),
    ] }

    /// A weekly class from the Monday after the tests' start (2026-03-07).
    static var seriesBody: [String: Any] { [
        "title": "Matrix series", "timezone": "America/New_York", "startDate": "2026-03-09", "localTime": "07:30",
        "recurrence": ["frequency": "weekly", "byDay": ["MO"]],
    ] }

    static func expected(_ c: Case, _ caller: Caller) -> HTTPStatus {
        switch c.access {
        case .open: return c.ok
        case .webhook: return .unauthorized
        case .admin: return caller == .admin ? c.ok : .unauthorized
        case .cron: return caller == .cron ? c.ok : .unauthorized
        case .anyUser: return [.none, .admin, .cron].contains(caller) ? .unauthorized : c.ok
        case .owner:
            switch caller {
            case .none, .admin, .cron: return .unauthorized
            case .otherMember, .otherCreator: return .forbidden
            case .owner: return c.ok
            }
        case .creatorRole:
            switch caller {
            case .none, .admin, .cron: return .unauthorized
            case .otherMember: return .forbidden
            case .otherCreator, .owner: return c.ok
            }
        }
    }

    static func configure(_ c: inout AppConfig) {
        c.isDevelopment = true // registers the dev outbox, so it is covered too
        c.cronSecret = cronSecret
        c.ncsSecret = "matrix-ncs-secret"
        c.emailWebhooks.resendKey = Array("matrix-resend-webhook-key".utf8)
        c.agora.earlyJoinSeconds = 7200 // the matrix's streams start in an hour
        // Configured but unreachable: the cases below never need S3 or Agora to answer.
        c.s3 = S3Settings(bucket: "matrix", location: try! S3Location(endpoint: "http://127.0.0.1:9", region: "us-east-1"),
                          credentials: AWSCredentials(accessKeyId: "AKIDMATRIX", secretAccessKey: "matrix-secret"))
        c.cloudRecording = CloudRecordingSettings(customerID: "matrix", customerSecret: "matrix", baseURL: "http://127.0.0.1:9")
    }

    @Test func everyRouteAnswersEveryCallerExactly() async throws {
        try await TestApp.run(adjust: Self.configure) { t in
            try await t.seedBasics()
            try await t.send(.POST, "api/admin/import", bearer: t.admin, json: ["users": [], "follows": [["followerId": "m1", "followedId": "creator"]]])
            let bearer: [Caller: String?] = [
                .none: nil, .otherMember: try await t.token("m2"), .otherCreator: try await t.token("creator2"),
                .owner: try await t.token("creator"), .admin: t.admin, .cron: Self.cronSecret,
            ]
            let uid = try #require(try await User.find("m1", on: t.app.db)).agoraUid
            let unsubscribe = t.app.deps.unsubscribe.token(member: "m1", creator: "creator", memberUID: uid)
            var failures: [String] = []
            for c in Self.cases {
                // A fresh stream per route: what one caller does cannot change what the next one gets.
                let stream = try await t.createStream()
                var series = ""
                if c.path.contains("{series}") {
                    let r = try await t.send(.POST, "api/creator/series", bearer: bearer[.owner]!, json: Self.seriesBody)
                    series = (r.json["series"] as? [String: Any])?["id"] as? String ?? ""
                }
                let path = c.path.replacingOccurrences(of: "{stream}", with: stream).replacingOccurrences(of: "{series}", with: series)
                    .replacingOccurrences(of: "{creator}", with: "creator").replacingOccurrences(of: "{unsubscribe}", with: unsubscribe)
                    .replacingOccurrences(of: "{provider}", with: "resend").replacingOccurrences(of: "{email}", with: "x@example.com")
                // Refused callers first, permitted ones last (they may change state).
                let order = Caller.allCases.sorted { Self.expected(c, $0) != c.ok && Self.expected(c, $1) == c.ok }
                for caller in order {
                    let r = try await t.send(c.method, path, bearer: bearer[caller]!, json: c.body)
                    let want = Self.expected(c, caller)
                    if r.status != want {
                        failures.append("\(c.method) \(c.path) as \(caller): got \(r.status.code) want \(want.code) \(r.raw.prefix(160))")
                    }
                    if r.status.code >= 400 && !(r.json["success"] as? Bool == false && r.errorCode != nil) {
                        failures.append("\(c.method) \(c.path) as \(caller): error not in the API's shape: \(r.raw.prefix(160))")
                    }
                }
            }
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")

            // The matrix covers every registered route (and nothing that does not exist).
            let registered = Set(t.app.routes.all.map { "\($0.method.rawValue) /" + $0.path.map { Self.shape($0.description) }.joined(separator: "/") })
            let covered = Set(Self.cases.map { "\($0.method.rawValue) /" + $0.path.split(separator: "/").map { Self.shape(String($0)) }.joined(separator: "/") })
            #expect(registered.subtracting(covered).isEmpty, "routes missing from the matrix: \(registered.subtracting(covered).sorted())")
            #expect(covered.subtracting(registered).isEmpty, "matrix cases without a route: \(covered.subtracting(registered).sorted())")
        }
    }

    /// Parameters and concrete ids compare equal: the route table says ":x", the cases concrete values.
    static func shape(_ segment: String) -> String {
        if segment.hasPrefix(":") || segment.hasPrefix("{") || segment == "x1" || segment == "m1" || segment == "999999" { return "*" }
        return segment
    }
}
