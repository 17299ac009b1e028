import Fluent
import Mailer
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// The providers' own libraries (scripts/oracles/email_webhooks.py: PyPI svix, sendgrid, cryptography).
enum EmailWebhookOracle {
    static func call(_ input: [String: Any]) async throws -> [String: Any] {
        let request = try JSONSerialization.data(withJSONObject: input)
        let data = try await Blocking.run { try run(request) }
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "oracle said nothing for \(input["cmd"] ?? "")")
    }

    private static func run(_ request: Data) throws -> Data {
        let python = ProcessInfo.processInfo.environment["AGORA_ORACLE_PYTHON"]!
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [AppProcess.root.appendingPathComponent("scripts/oracles/email_webhooks.py").path]
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(request)
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(10_000) }
        return data
    }
}

@Suite(.enabled(if: ZoneOracle.available, "needs the Python oracles (scripts/test)"))
struct EmailEventTests {
    static let postmarkUser = "postmark-hooks", postmarkPassword = "postmark-hook-password-0123"

    /// An app with webhook secrets from the oracle, mail through a recording transport.
    static func run(_ body: (TestApp, _ resendSecret: String, _ sendgrid: [String: Any]) async throws -> Void) async throws {
        let secret = try await EmailWebhookOracle.call(["cmd": "svix_secret"])["secret"] as! String
        let keypair = try await EmailWebhookOracle.call(["cmd": "sendgrid_keypair"])
        try await TestApp.run(mailTransport: ProviderIDTransport(), adjust: { config in
            var problems: [String] = []
            let env = ["RESEND_WEBHOOK_SECRET": secret, "SENDGRID_WEBHOOK_PUBLIC_KEY": keypair["public_key"] as! String,
                       "POSTMARK_WEBHOOK_USER": postmarkUser, "POSTMARK_WEBHOOK_PASSWORD": postmarkPassword]
            config.emailWebhooks = EmailWebhookSecrets.load(value: { env[$0] }, problems: &problems)
            precondition(problems.isEmpty, "\(problems)")
        }) { t in try await body(t, secret, keypair) }
    }

    static func resendEvent(_ t: TestApp, secret: String, id: String = "msg_\(UUID().uuidString.prefix(12))", timestamp: Int? = nil,
                            type: String, emailID: String, to: String, bounceType: String? = nil, tamper: Bool = false) async throws -> TestApp.Reply {
        var data: [String: Any] = ["email_id": emailID, "to": [to], "from": "live@fit.example.com", "subject": "s"]
        if let bounceType { data["bounce"] = ["type": bounceType, "subType": "General", "message": "mailbox does not exist"] }
        let body = String(decoding: try JSONSerialization.data(withJSONObject: ["type": type, "created_at": "2026-03-07T16:20:00.000Z", "data": data]), as: UTF8.self)
        let ts = timestamp ?? Int(t.app.deps.clock.now().timeIntervalSince1970)
        let signed = try await EmailWebhookOracle.call(["cmd": "svix", "secret": secret, "msg_id": id, "timestamp": ts, "body": body])
        var headers = HTTPHeaders()
        for key in ["svix-id", "svix-timestamp", "svix-signature"] { headers.add(name: key, value: signed[key] as! String) }
        return try await t.send(.POST, "api/webhooks/email/resend", raw: tamper ? body.replacingOccurrences(of: "\"s\"", with: "\"x\"") : body,
                                headers: headers)
    }

    /// A stream gone live whose live-now email went to `followers` of the creator: its id.
    static func liveNowSent(_ t: TestApp, followers: [String]) async throws -> String {
        try await t.seedBasics()
        try await t.importUsers([], follows: followers.map { ["followerId": $0, "followedId": "creator"] })
        let stream = try await t.createStream(scheduled: false)
        try await t.drainWorker()
        return stream
    }

    /// Provider id of the delivery to `recipient` (what ProviderIDTransport answered).
    static func providerID(_ t: TestApp, stream: String, recipient: String) async throws -> String {
        struct Row: Decodable { let provider_message_id: String? }
        let row = try await t.app.db.sql.raw("""
            SELECT provider_message_id FROM deliveries WHERE stream_id = \(bind: stream) AND recipient_id = \(bind: recipient)
            """).first(decoding: Row.self)
        return try #require(row?.provider_message_id)
    }

    @Test func resendSignaturesAreCheckedWithSvix() async throws {
        try await Self.run { t, secret, _ in
            let stream = try await Self.liveNowSent(t, followers: ["m1"])
            let pid = try await Self.providerID(t, stream: stream, recipient: "m1")
            let ok = try await Self.resendEvent(t, secret: secret, id: "msg_fixed1", type: "email.delivered", emailID: pid, to: "m1@example.com")
            #expect(ok.status == .ok && ok.json["accepted"] as? Int == 1, "\(ok.raw)")
            let again = try await Self.resendEvent(t, secret: secret, id: "msg_fixed1", type: "email.delivered", emailID: pid, to: "m1@example.com")
            #expect(again.json["duplicates"] as? Int == 1)
            let tampered = try await Self.resendEvent(t, secret: secret, type: "email.delivered", emailID: pid, to: "m1@example.com", tamper: true)
            #expect(tampered.status == .unauthorized)
            let stale = try await Self.resendEvent(t, secret: secret, timestamp: Int(t.app.deps.clock.now().timeIntervalSince1970) - 600,
                                                   type: "email.delivered", emailID: pid, to: "m1@example.com")
            #expect(stale.status == .unauthorized)
            let other = try await EmailWebhookOracle.call(["cmd": "svix_secret"])["secret"] as! String
            #expect(try await Self.resendEvent(t, secret: other, type: "email.delivered", emailID: pid, to: "m1@example.com").status == .unauthorized)
            try await t.drainWorker()
            let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator"))
            #expect(((counts.json["notifications"] as? [String: Any])?["live_now"] as? [String: Int])?["delivered"] == 1, "\(counts.raw)")
        }
    }

    @Test func sendgridSignaturesAreCheckedWithItsEventWebhook() async throws {
        try await Self.run { t, _, keypair in
            let body = #"[{"email":"x@example.com","event":"delivered","timestamp":1772900000,"sg_event_id":"ev1","sg_message_id":"abc.filter1"}]"#
            let signed = try await EmailWebhookOracle.call(["cmd": "sendgrid_sign", "private_key_pem": keypair["private_key_pem"]!, "timestamp": "1772900000", "body": body])
            var headers = HTTPHeaders()
            for (k, v) in signed { headers.add(name: k, value: v as! String) }
            let ok = try await t.send(.POST, "api/webhooks/email/sendgrid", raw: body, headers: headers)
            #expect(ok.status == .ok && ok.json["accepted"] as? Int == 1, "\(ok.raw)")
            let tampered = try await t.send(.POST, "api/webhooks/email/sendgrid", raw: body.replacingOccurrences(of: "delivered", with: "bounce"), headers: headers)
            #expect(tampered.status == .unauthorized)
            headers.replaceOrAdd(name: "X-Twilio-Email-Event-Webhook-Timestamp", value: "1772900001")
            #expect(try await t.send(.POST, "api/webhooks/email/sendgrid", raw: body, headers: headers).status == .unauthorized)
        }
    }

    @Test func postmarkNeedsItsBasicCredentialsAndUnsetSecretsAreOff() async throws {
        try await Self.run { t, _, _ in
            let body = #"{"RecordType":"Delivery","MessageID":"pm-1","Recipient":"x@example.com","DeliveredAt":"2026-03-07T16:20:00Z"}"#
            var headers = HTTPHeaders()
            headers.basicAuthorization = .init(username: Self.postmarkUser, password: Self.postmarkPassword)
            let ok = try await t.send(.POST, "api/webhooks/email/postmark", raw: body, headers: headers)
            #expect(ok.status == .ok)
            headers.basicAuthorization = .init(username: Self.postmarkUser, password: "wrong-password-0000000")
            let wrong = try await t.send(.POST, "api/webhooks/email/postmark", raw: body, headers: headers)
            let none = try await t.send(.POST, "api/webhooks/email/postmark", raw: body)
            let unknown = try await t.send(.POST, "api/webhooks/email/mailgun", raw: body)
            #expect(wrong.status == .unauthorized && none.status == .unauthorized && unknown.status == .notFound)
        }
        try await TestApp.run { t in
            let off = try await t.send(.POST, "api/webhooks/email/resend", raw: "{}")
            #expect(off.status == .notFound && off.errorCode == "feature_disabled")
        }
    }

    @Test func aHardBounceSuppressesTheAddressForEveryLaterFanOut() async throws {
        try await Self.run { t, secret, _ in
            let first = try await Self.liveNowSent(t, followers: ["m1", "m2"])
            let pid = try await Self.providerID(t, stream: first, recipient: "m1")
            let bounce = try await Self.resendEvent(t, secret: secret, type: "email.bounced", emailID: pid, to: "m1@example.com", bounceType: "Permanent")
            #expect(bounce.status == .ok)
            try await t.drainWorker()
            let owner = try await t.token("creator")
            let counts = try await t.send(.GET, "api/creator/streams/\(first)/notifications", bearer: owner)
            #expect(((counts.json["notifications"] as? [String: Any])?["live_now"] as? [String: Int])?["bounced"] == 1)
            _ = try await t.send(.POST, "api/creator/streams/\(first)/stop", bearer: owner)
            let second = try await t.createStream(scheduled: false)
            try await t.drainWorker()
            let rows = try await t.deliveries(second)
            let m1 = try #require(rows.first { $0.recipientID == "m1" })
            #expect(m1.status == .skipped && m1.lastReply == "suppressed")
            #expect(rows.first { $0.recipientID == "m2" }?.status == .sent)
            // The admin sees it, and can take it off the list; a re-import of the address stays suppressed until then.
            let list = try await t.send(.GET, "api/admin/suppressions", bearer: t.admin)
            let entry = try #require((list.json["suppressions"] as? [[String: Any]])?.first)
            #expect(entry["reason"] as? String == "hard_bounce" && entry["userId"] as? String == "m1" && entry["addressHash"] as? String == EmailHash.of("M1@example.com"))
            _ = try await t.send(.DELETE, "api/admin/users/m1", bearer: t.admin)
            let after = try await t.send(.GET, "api/admin/suppressions", bearer: t.admin)
            #expect(((after.json["suppressions"] as? [[String: Any]])?.first?["userId"]) is NSNull)
            let removed = try await t.send(.DELETE, "api/admin/suppressions/m1@example.com", bearer: t.admin)
            #expect(removed.json["deleted"] as? Bool == true)
            let empty = try await t.send(.GET, "api/admin/suppressions", bearer: t.admin)
            #expect((empty.json["suppressions"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func softBouncesSuppressOnlyWhenRepeatedAndComplaintsMuteTheCreator() async throws {
        try await Self.run { t, secret, _ in
            let stream = try await Self.liveNowSent(t, followers: ["m1", "m2"])
            let m1 = try await Self.providerID(t, stream: stream, recipient: "m1")
            for i in 0..<(Suppression.softBounceLimit - 1) {
                _ = try await Self.resendEvent(t, secret: secret, id: "msg_soft\(i)", type: "email.bounced", emailID: m1, to: "m1@example.com", bounceType: "Transient")
            }
            try await t.drainWorker()
            struct Row: Decodable { let suppressed_at: Date? }
            let before = try await t.app.db.sql.raw("SELECT suppressed_at FROM email_suppressions WHERE address_hash = \(bind: EmailHash.of("m1@example.com"))")
                .first(decoding: Row.self)
            #expect(before != nil && before?.suppressed_at == nil)
            _ = try await Self.resendEvent(t, secret: secret, id: "msg_softlast", type: "email.bounced", emailID: m1, to: "m1@example.com", bounceType: "Transient")
            try await t.drainWorker()
            let after = try await t.app.db.sql.raw("SELECT suppressed_at FROM email_suppressions WHERE address_hash = \(bind: EmailHash.of("m1@example.com"))")
                .first(decoding: Row.self)
            #expect(after?.suppressed_at != nil)
            // A complaint: suppressed, and the creator muted for that member (as an unsubscribe would).
            let m2 = try await Self.providerID(t, stream: stream, recipient: "m2")
            _ = try await Self.resendEvent(t, secret: secret, type: "email.complained", emailID: m2, to: "m2@example.com")
            try await t.drainWorker()
            let muted = try await NotificationMute.query(on: t.app.db).filter(\.$member.$id == "m2").filter(\.$creator.$id == "creator").count()
            #expect(muted == 1)
            let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator"))
            #expect(((counts.json["notifications"] as? [String: Any])?["live_now"] as? [String: Int])?["complained"] == 1)
        }
    }
}


extension EmailEventTests {
    /// A fan-out writes a handed email's row with its outcome, so the provider's events can come
    /// first: they wait for the row (10 s, doubling) instead of being applied without it, and
    /// one that never finds a row is applied without it when the window (`holdFor`) ends.
    @Test func eventsThatArriveBeforeTheirEmailsRowWaitForIt() async throws {
        try await Self.run { t, secret, _ in
            let stream = try await Self.liveNowSent(t, followers: ["m1", "m2"])
            let received = t.app.deps.clock.now()
            func at(_ seconds: TimeInterval) async throws {
                t.setNow(received.addingTimeInterval(seconds))
                try await t.app.deps.worker.drain()
            }
            let (early1, early2) = ("re_early_m1", "re_early_m2")
            _ = try await Self.resendEvent(t, secret: secret, type: "email.delivered", emailID: early1, to: "m1@example.com")
            _ = try await Self.resendEvent(t, secret: secret, type: "email.complained", emailID: early2, to: "m2@example.com")
            _ = try await Self.resendEvent(t, secret: secret, type: "email.bounced", emailID: "re_never", to: "gone@example.com", bounceType: "Permanent")
            try await at(0)
            struct Row: Decodable { let delivered_at: Date?; let complained_at: Date? }
            func row(_ recipient: String) async throws -> Row? {
                try await t.app.db.sql.raw("""
                    SELECT delivered_at, complained_at FROM deliveries WHERE stream_id = \(bind: stream) AND recipient_id = \(bind: recipient)
                    """).first(decoding: Row.self)
            }
            func muted() async throws -> Int {
                try await NotificationMute.query(on: t.app.db).filter(\.$member.$id == "m2").filter(\.$creator.$id == "creator").count()
            }
            // Held: nothing applied yet, not even the complaint's suppression (it is applied once, with its row).
            #expect(try await Self.suppressed(t, "m2@example.com") == false)
            #expect(try await muted() == 0)
            #expect(try await Self.suppressed(t, "gone@example.com") == false)

            // The rows are written (as a fan-out does once the provider has answered); the next try finds them.
            for (recipient, id) in [("m1", early1), ("m2", early2)] {
                try await t.app.db.sql.raw("UPDATE deliveries SET provider_message_id = \(bind: id) WHERE stream_id = \(bind: stream) AND recipient_id = \(bind: recipient)").run()
            }
            try await at(16)
            #expect(try await row("m1")?.delivered_at == ISO8601.parse("2026-03-07T16:20:00Z"))
            #expect(try await row("m2")?.complained_at != nil)
            #expect(try await Self.suppressed(t, "m2@example.com"))
            #expect(try await muted() == 1)
            let counts = try await t.send(.GET, "api/creator/streams/\(stream)/notifications", bearer: try await t.token("creator"))
            #expect(((counts.json["notifications"] as? [String: Any])?["live_now"] as? [String: Int])?["complained"] == 1)

            // The bounce for an email that has no row: held on every try inside the window (tries at 10, 36, 100 s
            // here), applied without a row by the try the window's end is due at.
            #expect(try await Self.suppressed(t, "gone@example.com") == false)
            try await at(100)
            #expect(try await Self.suppressed(t, "gone@example.com") == false)
            try await at(EmailEventApplier.holdFor + 1)
            #expect(try await Self.suppressed(t, "gone@example.com"))
            struct Held: Decodable { let n: Int }
            let open = try await t.app.db.sql.raw("SELECT COUNT(*) AS n FROM jobs WHERE kind = 'email_events' AND status = 'queued'").first(decoding: Held.self)
            #expect(open?.n == 0)
        }
    }

    /// Postmark echoes our delivery id: one that names no row yet is held; one whose row is there
    /// (with another provider id: an earlier attempt's) is applied at once — waiting would change nothing.
    @Test func anEventWithOurDeliveryIDIsHeldOnlyUntilItsRowExists() async throws {
        try await Self.run { t, _, _ in
            let stream = try await Self.liveNowSent(t, followers: ["m1", "m2"])
            struct Row: Decodable { let id: Int64 }
            let m1 = try #require(try await t.app.db.sql.raw("SELECT id FROM deliveries WHERE stream_id = \(bind: stream) AND recipient_id = 'm1'")
                .first(decoding: Row.self)?.id)
            var headers = HTTPHeaders()
            headers.basicAuthorization = .init(username: Self.postmarkUser, password: Self.postmarkPassword)
            func bounce(_ id: Int, deliveryID: Int64, email: String) async throws {
                let body = #"{"RecordType":"Bounce","Type":"HardBounce","ID":\#(id),"MessageID":"pm-\#(id)","Email":"\#(email)","#
                    + #""BouncedAt":"2026-03-07T16:20:00Z","Metadata":{"delivery_id":"\#(deliveryID)"}}"#
                #expect(try await t.send(.POST, "api/webhooks/email/postmark", raw: body, headers: headers).status == .ok)
            }
            try await bounce(1, deliveryID: m1, email: "m1@example.com")
            try await bounce(2, deliveryID: m1 + 1_000_000, email: "m2@example.com")
            try await t.app.deps.worker.drain()
            #expect(try await Self.suppressed(t, "m1@example.com"), "its row exists: applied at once")
            struct Bounced: Decodable { let bounced_at: Date? }
            let stamped = try await t.app.db.sql.raw("SELECT bounced_at FROM deliveries WHERE id = \(bind: m1)").first(decoding: Bounced.self)
            #expect(stamped != nil && stamped?.bounced_at == nil, "another provider id than the row's: the row is not this email's")
            #expect(try await Self.suppressed(t, "m2@example.com") == false, "no row by that id yet: held")
        }
    }

    static func suppressed(_ t: TestApp, _ address: String) async throws -> Bool {
        struct S: Decodable { let suppressed_at: Date? }
        return try await t.app.db.sql.raw("SELECT suppressed_at FROM email_suppressions WHERE address_hash = \(bind: EmailHash.of(address))")
            .first(decoding: S.self)?.suppressed_at != nil
    }
}

/// Accepts everything and answers with a provider id, like the HTTPS APIs do.
struct ProviderIDTransport: MailTransport {
    var name: String { "provider-ids" }
    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        .accepted(reply: "ok", providerID: "re_\(deliveryID)_\(UUID().uuidString.prefix(8).lowercased())")
    }
    func shutdown() async {}
}
