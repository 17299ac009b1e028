import Crypto
import Foundation
import SQLKit
import Vapor

/// Webhook secrets of the providers (each provider's route is off until its secret is set).
struct EmailWebhookSecrets: Sendable {
    /// RESEND_WEBHOOK_SECRET: the `whsec_…` value, decoded to its key bytes.
    var resendKey: [UInt8]?
    /// SENDGRID_WEBHOOK_PUBLIC_KEY: base64 DER (SubjectPublicKeyInfo), ECDSA P-256.
    var sendgridKey: P256.Signing.PublicKey?
    /// POSTMARK_WEBHOOK_USER / POSTMARK_WEBHOOK_PASSWORD: HTTP Basic credentials in the webhook URL.
    var postmarkUser: String?
    var postmarkPassword: String?

    static func load(value: (String) -> String?, problems: inout [String]) -> EmailWebhookSecrets {
        var s = EmailWebhookSecrets()
        if let raw = value("RESEND_WEBHOOK_SECRET") {
            if let key = StandardWebhookSignature.key(fromSecret: raw) { s.resendKey = key } else {
                problems.append("RESEND_WEBHOOK_SECRET must be the whsec_… signing secret (base64 after the prefix)")
            }
        }
        if let raw = value("SENDGRID_WEBHOOK_PUBLIC_KEY") {
            if let der = Data(base64Encoded: raw), let key = try? P256.Signing.PublicKey(derRepresentation: der) { s.sendgridKey = key } else {
                problems.append("SENDGRID_WEBHOOK_PUBLIC_KEY must be the base64 DER ECDSA P-256 public key SendGrid shows")
            }
        }
        s.postmarkUser = value("POSTMARK_WEBHOOK_USER")
        s.postmarkPassword = value("POSTMARK_WEBHOOK_PASSWORD")
        if (s.postmarkUser == nil) != (s.postmarkPassword == nil) {
            problems.append("POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD go together")
        }
        if let p = s.postmarkPassword, p.utf8.count < 16 { problems.append("POSTMARK_WEBHOOK_PASSWORD must be at least 16 characters") }
        return s
    }
}

/// Standard Webhooks / Svix signatures (what Resend sends): `v1,` + base64 HMAC-SHA256 over
/// `id.timestamp.body` with the secret's decoded bytes, space-separated when several.
enum StandardWebhookSignature {
    static let tolerance: TimeInterval = 300

    static func key(fromSecret secret: String) -> [UInt8]? {
        guard secret.hasPrefix("whsec_"), let data = Data(base64Encoded: String(secret.dropFirst(6))), data.count >= 16 else { return nil }
        return Array(data)
    }

    static func sign(key: [UInt8], id: String, timestamp: Int, body: some DataProtocol) -> String {
        var content = Data("\(id).\(timestamp).".utf8)
        content.append(contentsOf: body)
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: key))).base64EncodedString()
    }

    /// True when one `v1` entry matches and the timestamp is within `tolerance` of `now`.
    static func verify(key: [UInt8], id: String, timestamp raw: String, signatures: String, body: some DataProtocol, now: Date) -> Bool {
        guard let timestamp = Int(raw), abs(now.timeIntervalSince1970 - Double(timestamp)) <= tolerance, !id.isEmpty, id.utf8.count <= 256 else { return false }
        let expected = sign(key: key, id: id, timestamp: timestamp, body: body)
        return signatures.split(separator: " ").prefix(10).contains { SecretCompare.equal(String($0), expected) }
    }
}

/// POST /api/webhooks/email/:provider — delivery events, verified on the raw bytes, deduped by
/// event id, queued as one job, answered at once.
struct EmailWebhookController: RouteCollection {
    let secrets: EmailWebhookSecrets
    let jobs: JobQueue
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        routes.on(.POST, "webhooks", "email", ":provider", body: .collect(maxSize: "2mb"), use: receive)
    }

    struct Ack: Content { var success = true; let accepted: Int; let duplicates: Int }

    @Sendable func receive(req: Request) async throws -> Ack {
        guard let provider = EmailProvider(rawValue: req.parameters.get("provider") ?? "") else {
            throw APIError.notFound("provider_not_found", "No such email provider")
        }
        let body = req.body.data.map { Data(buffer: $0) } ?? Data()
        let eventID = try verify(provider, req, body)
        let events: [EmailEvent]
        do { events = try EmailEventParser.parse(provider, body: body, eventID: eventID, now: clock.now()) } catch {
            throw APIError(.badRequest, "invalid_body", "Not a \(provider.rawValue) event")
        }
        // Dedupe by event id (providers retry): the same table as Agora's notices, pruned after 7 days.
        // The dedupe keys and the job in one transaction: a failed enqueue leaves no key behind, so the
        // provider's retry is applied instead of acknowledged as a duplicate.
        let (jobs, clock) = (jobs, clock)
        let fresh: [EmailEvent] = try await req.db.writeTransaction { tx in
            let sql = tx.sql
            var fresh: [EmailEvent] = []
            for event in events {
                struct Row: Decodable { let notice_id: String }
                let key = "email:\(provider.rawValue):\(event.id.prefix(200))"
                let inserted = try await sql.insert(into: "webhook_notices").columns("notice_id", "received_at")
                    .values(SQLBind(key), SQLBind(clock.now())).ignoringConflicts(with: ["notice_id"]).returning("notice_id").all(decoding: Row.self)
                if !inserted.isEmpty { fresh.append(event) }
            }
            if !fresh.isEmpty {
                try await jobs.enqueue(kind: .emailEvents, key: "email_events:\(provider.rawValue):\(UUID().uuidString)",
                                       payload: EmailEventApplier.Payload(provider: provider, events: fresh, receivedAt: clock.now()), on: tx)
            }
            return fresh
        }
        return Ack(accepted: fresh.count, duplicates: events.count - fresh.count)
    }

    /// Checks the provider's proof; returns the event id a header carries (Svix).
    private func verify(_ provider: EmailProvider, _ req: Request, _ body: Data) throws -> String? {
        switch provider {
        case .resend:
            guard let key = secrets.resendKey else { throw APIError.featureDisabled("Resend webhooks (RESEND_WEBHOOK_SECRET)") }
            let id = req.headers.first(name: "svix-id") ?? req.headers.first(name: "webhook-id") ?? ""
            let timestamp = req.headers.first(name: "svix-timestamp") ?? req.headers.first(name: "webhook-timestamp") ?? ""
            let signature = req.headers.first(name: "svix-signature") ?? req.headers.first(name: "webhook-signature") ?? ""
            guard StandardWebhookSignature.verify(key: key, id: id, timestamp: timestamp, signatures: signature, body: body, now: clock.now()) else {
                throw APIError.unauthorized("Invalid webhook signature")
            }
            return id
        case .sendgrid:
            guard let key = secrets.sendgridKey else { throw APIError.featureDisabled("SendGrid webhooks (SENDGRID_WEBHOOK_PUBLIC_KEY)") }
            guard let raw = req.headers.first(name: "X-Twilio-Email-Event-Webhook-Signature"), let der = Data(base64Encoded: raw),
                  let timestamp = req.headers.first(name: "X-Twilio-Email-Event-Webhook-Timestamp"), timestamp.utf8.count <= 20,
                  let seconds = Double(timestamp), abs(clock.now().timeIntervalSince1970 - seconds) <= StandardWebhookSignature.tolerance,
                  let signature = try? P256.Signing.ECDSASignature(derRepresentation: der),
                  key.isValidSignature(signature, for: Data(timestamp.utf8) + body) else {
                throw APIError.unauthorized("Invalid webhook signature")
            }
            return nil
        case .postmark:
            guard let user = secrets.postmarkUser, let password = secrets.postmarkPassword else {
                throw APIError.featureDisabled("Postmark webhooks (POSTMARK_WEBHOOK_USER / POSTMARK_WEBHOOK_PASSWORD)")
            }
            guard let basic = req.headers.basicAuthorization,
                  SecretCompare.equal(basic.username, user) && SecretCompare.equal(basic.password, password) else {
                var error = APIError.unauthorized("Invalid webhook credentials")
                error.headers.replaceOrAdd(name: .wwwAuthenticate, value: "Basic realm=\"email-webhooks\"")
                throw error
            }
            return nil
        }
    }
}
