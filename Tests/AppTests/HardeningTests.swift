import Crypto
import Foundation
import Mailer
import NIOHTTP1
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 16: what an adversarial review of the running server found, one test (or more) per finding.
@Suite struct HardeningTests {
    // MARK: 3. Text limits in bytes, no control characters or line breaks in single-line fields

    @Test func textIsLimitedInBytesAndSingleLineFieldsRefuseBreaks() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            func create(_ extra: [String: Any]) async throws -> TestApp.Reply {
                var body: [String: Any] = ["creatorId": "creator", "title": "Ok", "isScheduled": true,
                                           "startTime": ISO8601.string(t.start.addingTimeInterval(3600))]
                body.merge(extra) { $1 }
                return try await t.send(.POST, "api/creator/streams/create", bearer: owner, json: body)
            }
            // One grapheme cluster, 960 KB: refused by its bytes.
            let zalgo = "a" + String(repeating: "\u{0301}", count: 480_000)
            #expect(zalgo.count == 1)
            let huge = try await create(["title": zalgo])
            #expect(huge.status == .badRequest && huge.errorCode == "validation_error", "\(huge.raw.prefix(200))")
            // 200 characters of 4-byte emoji still fit (800 bytes).
            #expect(try await create(["title": String(repeating: "🏋", count: 200)]).status == .created)
            for bad in ["Line\nbreak", "Carriage\rreturn", "Tab\there", "Bell\u{07}", "NEL\u{85}x", "LS\u{2028}x", "RLO\u{202E}gpj.exe"] {
                let r = try await create(["title": bad])
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "title \(bad.debugDescription): \(r.raw)")
                let w = try await create(["workoutType": bad])
                #expect(w.status == .badRequest, "workoutType \(bad.debugDescription)")
            }
            // Descriptions are multi-line: LF and tabs stay, CRLF becomes LF, other controls are refused.
            let multi = try await create(["description": "Warm-up\r\n\t- squats\nCool-down"])
            #expect(multi.status == .created)
            let multiID = (multi.json["stream"] as? [String: Any])?["id"] as? String ?? ""
            let stored = try await t.send(.GET, "api/streams/\(multiID)", bearer: owner)
            #expect((stored.json["stream"] as? [String: Any])?["description"] as? String == "Warm-up\n\t- squats\nCool-down", "\(stored.raw)")
            #expect(try await create(["description": "null\u{0}byte"]).status == .badRequest)
            // Names at import: the same single-line rule.
            let name = try await t.send(.POST, "api/admin/import", bearer: t.admin,
                                        json: ["users": [["id": "x1", "name": "Evil\r\nBcc: all@example.com", "email": "x1@example.com"]]])
            #expect(name.status == .badRequest)
        }
    }

    @Test func publicScheduleFeedIsCapped() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            for i in 0..<(FeedController.publicFeedLimit + 5) {
                _ = try await t.createStream(start: t.start.addingTimeInterval(Double(3600 + i * 60)), title: "Class \(i)")
            }
            let feed = try await t.send(.GET, "api/creator/creator/schedule.ics")
            #expect(feed.status == .ok)
            #expect(feed.raw.components(separatedBy: "BEGIN:VEVENT").count - 1 == FeedController.publicFeedLimit)
        }
    }

    // MARK: 4. Strict ISO 8601 instants

    @Test func onlyRealInstantsParse() {
        let good: [(String, Double)] = [
            ("2026-03-08T07:30:00Z", 1_772_955_000), ("2026-03-08T07:30:00.250Z", 1_772_955_000.25),
            ("2026-03-08T02:30:00-05:00", 1_772_955_000), ("2026-03-08T13:00:00+05:30", 1_772_955_000),
            ("2028-02-29T00:00:00Z", 1_835_395_200), ("2000-02-29T12:00:00z", 951_825_600),
            ("1970-01-01T00:00:00.000000001Z", 0.000000001), ("9999-12-31T23:59:59Z", 253_402_300_799),
        ]
        for (text, epoch) in good {
            let parsed = ISO8601.parse(text)
            #expect(parsed.map { abs($0.timeIntervalSince1970 - epoch) < 0.000_01 } == true, "\(text) → \(String(describing: parsed))")
        }
        // Foundation agrees on every valid one (an independent parser).
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        for text in ["2026-03-08T07:30:00Z", "2026-03-08T02:30:00-05:00", "2028-02-29T00:00:00Z"] {
            #expect(ISO8601.parse(text) == f.date(from: text))
        }
        let bad = [
            "2027-02-30T10:00:00Z", "2026-02-29T10:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z",
            "2026-01-01T10:00:00+99:00", "2026-01-01T10:00:00+24:00", "2026-01-01T10:00:00+05:60", "2026-01-01T10:00:00+0500",
            "99999-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "2026-01-01T10:00:00", "2026-01-01 10:00:00Z", "2026-1-01T10:00:00Z",
            "2026-01-01T10:00Z", "2026-01-01T10:00:00.Z", "2026-01-01T10:00:00.1234567890Z", "2026-01-01T10:00:00Zjunk",
            "２０２６-01-01T10:00:00Z", "2026-01-01T10:00:00ZZ", "", "2026-01-01",
        ]
        for text in bad { #expect(ISO8601.parse(text) == nil, "accepted \(text)") }
    }

    @Test func createAndEditRefuseImpossibleDates() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            for start in ["2027-02-30T10:00:00Z", "2027-01-01T10:00:00+99:00", "99999-01-01T00:00:00Z"] {
                let r = try await t.send(.POST, "api/creator/streams/create", bearer: owner,
                                         json: ["creatorId": "creator", "title": "T", "isScheduled": true, "startTime": start])
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "\(start): \(r.raw)")
            }
            let id = try await t.createStream()
            let edit = try await t.send(.PATCH, "api/creator/streams/\(id)", bearer: owner, json: ["startTime": "2027-02-30T10:00:00Z"])
            #expect(edit.status == .badRequest)
            let range = try await t.send(.GET, "api/creator/creator/scheduled-streams?startDate=2027-02-30", bearer: owner)
            #expect(range.status == .badRequest)
        }
    }

    // MARK: 5. One email address rule, at import and at send time

    @Test func importAcceptsOnlySendableAddresses() async throws {
        let refused = ["<a@example.com>", "x@evil.com>,<victim2.example.com", "ü@example.com", "a@exämple.com", "a b@example.com",
                       "\"quoted\"@example.com", "a@[127.0.0.1]", "a@localhost", "a..b@example.com", ".a@example.com", "a.@example.com",
                       "a@-example.com", "a@example..com", "a@example.com.", "a@@example.com", "a@example.123", "a,b@example.com",
                       "a@example.com\r\nBcc: x@example.com", String(repeating: "a", count: 65) + "@example.com"]
        let accepted = ["a@example.com", "first.last+tag@sub.example.co.uk", "o'neil@example.com", "a@xn--bcher-kva.example", "A_B-c@EXAMPLE.COM"]
        for address in refused {
            #expect(!Validation.isValidEmail(address), "accepted \(address.debugDescription)")
            #expect(!MailAddress.isValid(address))
        }
        for address in accepted { #expect(Validation.isValidEmail(address) && MailAddress.isValid(address), "refused \(address)") }
        try await TestApp.run { t in
            for address in refused.prefix(3) {
                let r = try await t.send(.POST, "api/admin/import", bearer: t.admin,
                                         json: ["users": [["id": "u1", "name": "U", "email": address]]])
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "\(address): \(r.raw)")
            }
            // What is accepted renders as exactly one recipient.
            let message = MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(accepted[1], name: "Last, First")],
                                      subject: "s", text: "t")
            let to = message.render().components(separatedBy: "\r\n").first { $0.hasPrefix("To:") } ?? ""
            #expect(to == "To: \"Last, First\" <first.last+tag@sub.example.co.uk>")
        }
    }

    // MARK: 6. JWT: HS256 header only, nbf, iat, maximum lifetime

    static func jwt(header: [String: Any], claims: [String: Any], secret: String = TestCredentials.jwtSecret,
                    signingInput override: String? = nil) throws -> String {
        func b64(_ object: [String: Any]) throws -> String {
            try JSONSerialization.data(withJSONObject: object, options: .sortedKeys).base64URL
        }
        let input = "\(try b64(header)).\(try b64(claims))"
        let mac = HMAC<SHA256>.authenticationCode(for: Data((override ?? input).utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return input + "." + Data(mac).base64URL
    }

    @Test func jwtChecksAreStrict() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let now = t.start.timeIntervalSince1970
            func status(_ token: String) async throws -> (HTTPStatus, String?) {
                let r = try await t.send(.GET, "api/me/notification-preferences", bearer: token)
                return (r.status, r.errorCode)
            }
            let valid: [String: Any] = ["sub": "m1", "iat": now - 10, "exp": now + 3600]
            #expect(try await status(try Self.jwt(header: ["alg": "HS256", "typ": "JWT"], claims: valid)).0 == .ok)
            #expect(try await status(try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "exp": now + 3600])).0 == .ok)
            // A valid HS256 MAC under a header that names another algorithm (or none) is refused.
            for header: [String: Any] in [["alg": "none"], ["alg": "HS384"], ["alg": "RS256"], ["alg": "hs256"], ["typ": "JWT"],
                                          ["alg": "HS256", "typ": "JWE"], ["alg": "HS256", "crit": ["exp"]]] {
                #expect(try await status(try Self.jwt(header: header, claims: valid)) == (.unauthorized, "unauthorized"), "\(header)")
            }
            let notYet = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "nbf": now + 600, "exp": now + 3600])
            #expect(try await status(notYet) == (.unauthorized, "token_not_yet_valid"))
            // Within the 60 s leeway: accepted.
            #expect(try await status(try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "nbf": now + 30, "exp": now + 3600])).0 == .ok)
            let future = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "iat": now + 600, "exp": now + 3600])
            #expect(try await status(future).0 == .unauthorized)
            let century = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "iat": now, "exp": now + 100 * 365 * 86_400])
            #expect(try await status(century).0 == .unauthorized)
            let longNoIat = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "exp": now + 8 * 86_400])
            #expect(try await status(longNoIat).0 == .unauthorized)
            let week = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "iat": now, "exp": now + 7 * 86_400])
            #expect(try await status(week).0 == .ok)
            let wrongKey = try Self.jwt(header: ["alg": "HS256"], claims: valid, secret: "another-secret-that-is-long-enough-000000")
            #expect(try await status(wrongKey).0 == .unauthorized)
        }
        try await TestApp.run(adjust: { $0.jwt.maxAgeSeconds = 3600 }) { t in
            try await t.seedBasics()
            let now = t.start.timeIntervalSince1970
            let twoHours = try Self.jwt(header: ["alg": "HS256"], claims: ["sub": "m1", "iat": now, "exp": now + 7200])
            #expect(try await t.send(.GET, "api/me/notification-preferences", bearer: twoHours).status == .unauthorized)
        }
    }

    // MARK: 7. X-Forwarded-For only from trusted proxies

    @Test func forwardedForIsBelievedOnlyFromTrustedProxies() throws {
        let none: [CIDR] = []
        #expect(ClientAddress.resolve(peer: "203.0.113.9", forwardedFor: ["1.2.3.4"], trusted: none) == "203.0.113.9")
        let proxies = CIDR.named("private")!
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: ["198.51.100.7"], trusted: proxies) == "198.51.100.7")
        // A client's own forged entries sit left of what the proxy appended: ignored.
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: ["6.6.6.6, 198.51.100.7"], trusted: proxies) == "198.51.100.7")
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: ["198.51.100.7, 10.9.9.9"], trusted: proxies) == "198.51.100.7")
        #expect(ClientAddress.resolve(peer: "10.1.2.3", forwardedFor: ["garbage"], trusted: proxies) == "10.1.2.3")
        #expect(ClientAddress.resolve(peer: "203.0.113.9", forwardedFor: ["198.51.100.7"], trusted: proxies) == "203.0.113.9")
        #expect(ClientAddress.resolve(peer: "::ffff:10.0.0.5", forwardedFor: ["2001:db8::1"], trusted: proxies) == "2001:db8::1")
        #expect(CIDR("10.0.0.0/8")!.contains("10.255.0.1") && !CIDR("10.0.0.0/8")!.contains("11.0.0.1"))
        #expect(CIDR("2001:db8::/32")!.contains("2001:db8:ffff::1") && !CIDR("2001:db8::/32")!.contains("2001:db9::1"))
        #expect(CIDR("192.168.1.7")!.contains("192.168.1.7") && !CIDR("192.168.1.7")!.contains("192.168.1.8"))
        for bad in ["10.0.0.0/33", "10.0.0/8", "example.com", "::1/129", "", "10.0.0.0/-1", "10.0.0.0/٣"] { #expect(CIDR(bad) == nil, "\(bad)") }
        // Configuration: invalid entries fail the start; 'private' expands.
        #expect(throws: AppConfig.Error.self) { try Self.productionConfig(["TRUSTED_PROXIES": "10.0.0.0/8,not-a-range"]) }
        #expect(try Self.productionConfig(["TRUSTED_PROXIES": "private"]).trustedProxies.count == 6)
    }

    @Test func unsubscribeLimitCannotBeDodgedByRotatingTheHeader() async throws {
        try await TestApp.run(adjust: { $0.rateLimits.unsubscribePerMinute = 2 }) { t in
            for i in 0..<2 { _ = try await t.send(.GET, "api/unsubscribe/nope", headers: ["X-Forwarded-For": "1.1.1.\(i)"]) }
            let third = try await t.send(.GET, "api/unsubscribe/nope", headers: ["X-Forwarded-For": "1.1.1.99"])
            #expect(third.status == .tooManyRequests)
        }
    }

    static func productionConfig(_ extra: [String: String]) throws -> AppConfig {
        let env: [String: String] = ["JWT_SECRET": TestCredentials.jwtSecret, "AGORA_APP_ID": TestCredentials.agoraAppId,
                                     "AGORA_APP_CERTIFICATE": TestCredentials.agoraCert].merging(extra) { $1 }
        return try AppConfig.load(environment: .production, arguments: [], get: { env[$0] })
    }

    // MARK: 8. Trace logs: query values and unknown headers redacted

    @Test func requestHeadsInTraceLogsAreRedacted() {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "api.example.com")
        headers.add(name: "X-Cron-Secret", value: "cron-secret-value-123")
        headers.add(name: "Authorization", value: "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
        headers.add(name: "Accept", value: "application/json; q=0.9")
        headers.add(name: "Cookie", value: "session=abc; other=def")
        headers.add(name: "X-Request-ID", value: "req-1")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/streams/1/token?access_token=eyJhbGciOiJIUzI1NiJ9.e30.sig&role=publisher", headers: headers)
        let line = Redaction.scrub("Decoded HTTP part: head(\(head))")
        for secret in ["cron-secret-value-123", "eyJhbGciOiJIUzI1NiJ9", "session=abc", "other=def", "publisher"] {
            #expect(!line.contains(secret), "\(secret) leaked: \(line)")
        }
        #expect(line.contains("uri: \"/api/streams/1/token?access_token=[redacted]&role=[redacted]\""), "\(line)")
        #expect(line.contains("Host: api.example.com") && line.contains("Accept: application/json; q=0.9") && line.contains("X-Request-ID: req-1"))
        #expect(line.contains("X-Cron-Secret: [redacted]") && line.contains("Cookie: [redacted]"))
        let bare = Redaction.scrub("Decoded HTTP part: head(\(HTTPRequestHead(version: .http1_1, method: .GET, uri: "/x?SECRETVALUE", headers: [:])))")
        #expect(!bare.contains("SECRETVALUE"))
        let body = Redaction.scrub("Decoded HTTP part: body(ByteBuffer { readableBytes: 24, readableBytesView: [7b 22 65 6d 61 69 6c 22] })")
        #expect(body == "Decoded HTTP part: body([redacted])")
    }

    // MARK: 10. /metrics and /ready behind METRICS_TOKEN

    @Test func metricsTokenGuardsProbes() async throws {
        let token = "metrics-token-0123456789"
        try await TestApp.run(adjust: { $0.metricsToken = token }) { t in
            for path in ["metrics", "ready"] {
                let anonymous = try await t.send(.GET, path)
                #expect(anonymous.status == .unauthorized && anonymous.headers.first(name: .wwwAuthenticate) == "Bearer")
                #expect(try await t.send(.GET, path, bearer: "wrong-token-000000000").status == .unauthorized)
                #expect(try await t.send(.GET, path, bearer: token).status == .ok)
            }
            #expect(try await t.send(.GET, "health").status == .ok)
        }
        try await TestApp.run { t in
            let open = try await t.send(.GET, "metrics")
            #expect(open.status == .ok)
        }
        #expect(throws: AppConfig.Error.self) { try Self.productionConfig(["METRICS_TOKEN": "short"]) }
    }

    // MARK: 11. Replay URLs only under configured origins; verified replays stay

    @Test func replayURLsNeedAConfiguredOrigin() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            let id = try await t.createStream()
            let put = try await t.send(.PUT, "api/creator/streams/\(id)/replay", bearer: owner, json: ["replayUrl": "https://evil.example.com/x.mp4"])
            #expect(put.status == .notFound && put.errorCode == "feature_disabled")
            let stop = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: ["replayUrl": "https://169.254.169.254/latest"])
            #expect(stop.status == .badRequest && stop.errorCode == "replay_url_not_allowed")
        }
        try await TestApp.run(adjust: { $0.replayOrigins = ["https://cdn.example.com/videos/"] }) { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            let id = try await t.createStream(scheduled: false)
            for bad in ["https://evil.example.com/videos/a.mp4", "https://cdn.example.com/other/a.mp4", "http://cdn.example.com/videos/a.mp4",
                        "https://cdn.example.com/videos/../admin", "https://cdn.example.com/videos/%2e%2e/admin", "https://cdn.example.com/videos/.%2E/x",
                        "https://cdn.example.com/videos%2F..%2Fadmin", "https://user@cdn.example.com/videos/a.mp4", "https://cdn.example.com.evil.net/videos/a"] {
                let r = try await t.send(.PUT, "api/creator/streams/\(id)/replay", bearer: owner, json: ["replayUrl": bad])
                #expect(r.status == .badRequest, "\(bad): \(r.raw)")
            }
            let ok = try await t.send(.PUT, "api/creator/streams/\(id)/replay", bearer: owner, json: ["replayUrl": "https://CDN.example.com/videos/a.mp4"])
            #expect(ok.status == .ok, "\(ok.raw)")
            // A verified replay (our bucket, our recording) is never replaced by an external URL, not even by /stop later.
            try await t.app.db.sql.raw("UPDATE streams SET replay_url = 'https://bucket.example/rec.mp4', replay_verified = \(bind: true) WHERE id = \(bind: id)").run()
            let replace = try await t.send(.PUT, "api/creator/streams/\(id)/replay", bearer: owner, json: ["replayUrl": "https://cdn.example.com/videos/b.mp4"])
            #expect(replace.status == .conflict && replace.errorCode == "replay_verified")
            _ = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: [:])
            let again = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner, json: ["replayUrl": "https://cdn.example.com/videos/c.mp4"])
            #expect(again.status == .conflict && again.errorCode == "replay_verified", "\(again.raw)")
            let stream = try await t.send(.GET, "api/streams/\(id)", bearer: owner)
            #expect((stream.json["stream"] as? [String: Any])?["replayUrl"] as? String == "https://bucket.example/rec.mp4")
        }
        #expect(throws: AppConfig.Error.self) { try Self.productionConfig(["REPLAY_URL_ORIGINS": "http://cdn.example.com"]) }
    }

    // MARK: 12. No user enumeration

    @Test func membersAndUnknownIdsAnswerAlike() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let caller = try await t.token("m2")
            let member = try await t.send(.GET, "api/creator/m1/scheduled-streams", bearer: caller)
            let unknown = try await t.send(.GET, "api/creator/nobody/scheduled-streams", bearer: caller)
            #expect(member.status == .notFound && member.raw == unknown.raw && unknown.status == .notFound)
            #expect(try await t.send(.GET, "api/creator/creator/scheduled-streams", bearer: caller).status == .ok)
            let icsMember = try await t.send(.GET, "api/creator/m1/schedule.ics")
            let icsUnknown = try await t.send(.GET, "api/creator/nobody/schedule.ics")
            #expect(icsMember.status == .notFound && icsMember.raw == icsUnknown.raw)
            let muteMember = try await t.send(.PUT, "api/me/notification-preferences", bearer: caller, json: ["mutedCreators": ["m1"]])
            let muteUnknown = try await t.send(.PUT, "api/me/notification-preferences", bearer: caller, json: ["mutedCreators": ["nobody"]])
            #expect(muteMember.status == .badRequest && muteMember.raw == muteUnknown.raw)
            #expect(!muteUnknown.raw.contains("nobody") && !muteMember.raw.contains("m1"))
            #expect(try await t.send(.PUT, "api/me/notification-preferences", bearer: caller, json: ["mutedCreators": ["creator"]]).status == .ok)
        }
    }

    // MARK: 13. Housekeeping prunes what only grows

    @Test func housekeepingPrunesOldNoticesJobsAndOutbox() async throws {
        try await TestApp.run { t in
            let sql = t.app.db.sql
            let now = t.start
            let old = now.addingTimeInterval(-8 * 86_400), recent = now.addingTimeInterval(-86_400), ancient = now.addingTimeInterval(-31 * 86_400)
            for (i, at) in [old, old, recent].enumerated() {
                try await sql.raw("INSERT INTO webhook_notices (notice_id, received_at) VALUES (\(bind: "n\(i)"), \(bind: at))").run()
            }
            func job(_ key: String, _ status: JobStatus, _ at: Date) async throws {
                try await sql.raw("""
                    INSERT INTO jobs (kind, key, payload, status, run_at, attempts, max_attempts) VALUES
                    ('fanout', \(bind: key), '{}', \(bind: status.rawValue), \(bind: at), 1, 5)
                    """).run()
            }
            try await job("done-old", .done, old)
            try await job("skipped-old", .skipped, old)
            try await job("done-recent", .done, recent)
            try await job("dead-old", .dead, old)
            try await job("dead-ancient", .dead, ancient)
            try await job("queued-old", .queued, old)
            try await sql.raw("""
                INSERT INTO outbox_messages (to_address, subject, raw, text_body, created_at) VALUES ('a@example.com', 's', 'r', 't', \(bind: old)),
                ('b@example.com', 's', 'r', 't', \(bind: recent))
                """).run()
            let pruned = try await Housekeeping.run(on: sql, now: now)
            #expect(pruned == .init(notices: 2, jobs: 3, outbox: 1))
            struct Key: Decodable { let key: String }
            let left = try await sql.raw("SELECT key FROM jobs ORDER BY key").all(decoding: Key.self).map(\.key)
            #expect(left == ["dead-old", "done-recent", "queued-old"])
            #expect(try await Housekeeping.run(on: sql, now: now) == .init())
        }
    }

    // MARK: 14. CORS at the documented default

    @Test func corsAllowsTheDefaultFrontendInDevelopment() async throws {
        func preflight(_ t: TestApp, origin: String) async throws -> String? {
            let r = try await t.send(.OPTIONS, "api/streams/live", headers: ["Origin": origin, "Access-Control-Request-Method": "GET"])
            return r.headers.first(name: .accessControlAllowOrigin)
        }
        try await TestApp.run(adjust: { $0.frontendURL = nil; $0.corsAllowedOrigins = []; $0.isDevelopment = true }) { t in
            let allowed = try await preflight(t, origin: "http://localhost:3000")
            let other = try await preflight(t, origin: "https://evil.example.com")
            #expect(allowed == "http://localhost:3000")
            #expect(other != "https://evil.example.com")
        }
        try await TestApp.run(adjust: { $0.frontendURL = nil; $0.corsAllowedOrigins = [] }) { t in
            // Production without FRONTEND_URL: no browser origin is allowed.
            let none = try await preflight(t, origin: "http://localhost:3000")
            #expect(none == nil)
        }
        try await TestApp.run { t in
            let frontend = try await preflight(t, origin: TestCredentials.frontend)
            let admin = try await preflight(t, origin: "https://admin.example.com")
            #expect(frontend == TestCredentials.frontend)
            #expect(admin == "https://admin.example.com")
        }
    }

    // MARK: 15. 415 for anything but JSON on JSON routes

    @Test func nonJSONBodiesAre415() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let owner = try await t.token("creator")
            let json = #"{"creatorId":"creator","title":"T","isScheduled":false}"#
            let form = try await t.send(.POST, "api/creator/streams/create", bearer: owner, raw: "creatorId=creator&title=T&isScheduled=false",
                                        headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(form.status == .unsupportedMediaType && form.errorCode == "unsupported_media_type")
            let none = try await t.app.testing().sendRequest(.POST, "api/creator/streams/create",
                                                             headers: ["Authorization": "Bearer \(owner)"], body: .init(string: json))
            #expect(none.status == .unsupportedMediaType)
            let text = try await t.send(.POST, "api/creator/streams/create", bearer: owner, raw: json, headers: ["Content-Type": "text/plain"])
            #expect(text.status == .unsupportedMediaType)
            let latin = try await t.send(.POST, "api/creator/streams/create", bearer: owner, raw: json, headers: ["Content-Type": "application/json; charset=latin1"])
            #expect(latin.status == .unsupportedMediaType)
            let importForm = try await t.send(.POST, "api/admin/import", bearer: t.admin, raw: "users=", headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(importForm.status == .unsupportedMediaType)
            #expect(try await t.send(.POST, "api/creator/streams/create", bearer: owner, raw: json, headers: ["Content-Type": "application/json; charset=utf-8"]).status == .created)
            // Stop's body is optional: no body at all is fine.
            let id = try await t.createStream()
            #expect(try await t.app.testing().sendRequest(.POST, "api/creator/streams/\(id)/stop", headers: ["Authorization": "Bearer \(owner)"]).status == .ok)
        }
    }

    // MARK: 16. Stable responses, a true contract, links at the real port

    @Test func responsesHaveSortedKeys() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let id = try await t.createStream()
            let r = try await t.send(.GET, "api/streams/\(id)", bearer: try await t.token("m1"))
            for object in Self.objectKeyOrders(r.raw) { #expect(object == object.sorted(), "\(object)") }
            let again = try await t.send(.GET, "api/streams/\(id)", bearer: try await t.token("m1"))
            #expect(r.raw == again.raw)
        }
    }

    /// Keys of every JSON object in document order (a tiny scanner; strings may hold anything).
    static func objectKeyOrders(_ json: String) -> [[String]] {
        var stack: [[String]] = [], done: [[String]] = []
        var chars = Array(json.unicodeScalars)[...]
        var expectingKey: [Bool] = []
        while let c = chars.popFirst() {
            switch c {
            case "{": stack.append([]); expectingKey.append(true)
            case "}": done.append(stack.removeLast()); expectingKey.removeLast()
            case "[": expectingKey.append(false)
            case "]": expectingKey.removeLast()
            case ",": if let last = expectingKey.indices.last, !stack.isEmpty { expectingKey[last] = true }
            case ":": if let last = expectingKey.indices.last { expectingKey[last] = false }
            case "\"":
                var s = ""
                while let d = chars.popFirst(), d != "\"" { if d == "\\" { _ = chars.popFirst() } else { s.unicodeScalars.append(d) } }
                if expectingKey.last == true, !stack.isEmpty, !chars.isEmpty, chars.first == ":" { stack[stack.count - 1].append(s) }
            default: break
            }
        }
        return done
    }

    @Test func openAPINeverPromises422AndListsJSONRoutes415() throws {
        let url = AppProcess.root.appendingPathComponent("Resources/openapi.json")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let text = try String(contentsOf: url, encoding: .utf8)
        #expect(!text.contains("\"422\""))
        let paths = try #require(doc["paths"] as? [String: [String: Any]])
        for (path, operations) in paths {
            for (method, raw) in operations {
                guard let op = raw as? [String: Any], let body = op["requestBody"] as? [String: Any],
                      (body["content"] as? [String: Any])?["application/json"] != nil, !path.hasPrefix("/api/webhooks/") else { continue }
                #expect((op["responses"] as? [String: Any])?["415"] != nil, "\(method) \(path) lacks 415")
            }
        }
    }

    @Test func developmentLinksUseTheServingPort() throws {
        #expect(AppConfig.listeningPort(arguments: ["App", "serve", "--port", "9000"], environmentPort: nil) == 9000)
        #expect(AppConfig.listeningPort(arguments: ["App", "serve", "-p", "9001"], environmentPort: "7000") == 9001)
        #expect(AppConfig.listeningPort(arguments: ["App", "serve", "--bind", "127.0.0.1:9002"], environmentPort: nil) == 9002)
        #expect(AppConfig.listeningPort(arguments: ["App", "serve"], environmentPort: "7000") == 7000)
        #expect(AppConfig.listeningPort(arguments: ["App"], environmentPort: nil) == 8080)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devcfg-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try AppConfig.load(environment: .development, arguments: ["App", "serve", "--port", "9000"], dataDirectory: dir, get: { _ in nil })
        #expect(config.mail.publicBaseURL == "http://localhost:9000")
        // Dev secrets are private from their first byte.
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/dev-secrets.json")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(AppConfig.isLoopback("127.0.0.1") && AppConfig.isLoopback("::1") && AppConfig.isLoopback("localhost") && AppConfig.isLoopback("127.8.0.1"))
        #expect(!AppConfig.isLoopback("0.0.0.0") && !AppConfig.isLoopback("::") && !AppConfig.isLoopback("10.0.0.1"))
        #expect(AppConfig.listeningHost(arguments: ["App", "serve", "--hostname", "0.0.0.0"], default: "127.0.0.1") == "0.0.0.0")
        #expect(AppConfig.listeningHost(arguments: ["App", "serve", "-b", "0.0.0.0:80"], default: "127.0.0.1") == "0.0.0.0")
        #expect(AppConfig.listeningHost(arguments: ["App", "serve"], default: "127.0.0.1") == "127.0.0.1")
    }
}

extension Data {
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
