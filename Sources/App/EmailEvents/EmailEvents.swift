import Fluent
import Foundation
import SQLKit

/// One thing a provider says happened to an email after it left, in our terms.
struct EmailEvent: Codable, Sendable, Equatable {
    enum Kind: String, Codable, Sendable {
        case delivered, hardBounce = "hard_bounce", softBounce = "soft_bounce", complained, opened, clicked
    }
    /// The provider's event id (dedupe key within the provider).
    let id: String
    let kind: Kind
    /// Resend email_id, Postmark MessageID, SendGrid sg_message_id (up to its first dot).
    let providerMessageID: String?
    /// Our delivery id when the provider echoes it (Postmark Metadata, SendGrid custom_args).
    let deliveryID: Int64?
    /// The recipient address the event names (for the suppression list); never logged.
    let address: String?
    let at: Date
}

/// The events of one provider webhook call, parsed from its verified raw body.
enum EmailEventParser {
    struct Invalid: Error {}

    static func parse(_ provider: EmailProvider, body: Data, eventID: String?, now: Date) throws -> [EmailEvent] {
        guard let json = try? JSONSerialization.jsonObject(with: body) else { throw Invalid() }
        switch provider {
        case .resend: return try resend(json, eventID: eventID, now: now)
        case .postmark: return try postmark(json, now: now)
        case .sendgrid: return try sendgrid(json, now: now)
        }
    }

    private static func date(_ raw: Any?) -> Date? {
        if let s = raw as? String {
            if let d = ISO8601.parse(s) { return d }
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            return f.date(from: s)
        }
        if let n = raw as? Double { return Date(timeIntervalSince1970: n) }
        if let n = raw as? Int { return Date(timeIntervalSince1970: Double(n)) }
        return nil
    }

    /// Svix-delivered: `{"type": "email.bounced", "created_at", "data": {"email_id", "to": [...], "bounce": {"type"}}}`.
    static func resend(_ json: Any, eventID: String?, now: Date) throws -> [EmailEvent] {
        guard let o = json as? [String: Any], let type = o["type"] as? String, let data = o["data"] as? [String: Any] else { throw Invalid() }
        let kind: EmailEvent.Kind?
        switch type {
        case "email.delivered": kind = .delivered
        case "email.bounced":
            let bounceType = (data["bounce"] as? [String: Any])?["type"] as? String
            kind = bounceType == "Transient" ? .softBounce : .hardBounce
        case "email.complained": kind = .complained
        case "email.opened": kind = .opened
        case "email.clicked": kind = .clicked
        default: kind = nil // sent, delivery_delayed, …: nothing to record
        }
        guard let kind else { return [] }
        let to = (data["to"] as? [String])?.first ?? (data["to"] as? String)
        return [EmailEvent(id: eventID ?? "\(type):\(data["email_id"] as? String ?? "")", kind: kind, providerMessageID: data["email_id"] as? String,
                           deliveryID: nil, address: to, at: date(o["created_at"]) ?? now)]
    }

    /// One record per call: RecordType Bounce (Type HardBounce, SoftBounce, …), SpamComplaint, Delivery, Open, Click.
    static func postmark(_ json: Any, now: Date) throws -> [EmailEvent] {
        guard let o = json as? [String: Any], let record = o["RecordType"] as? String else { throw Invalid() }
        let messageID = o["MessageID"] as? String
        let kind: EmailEvent.Kind?
        switch record {
        case "Delivery": kind = .delivered
        case "Bounce":
            switch o["Type"] as? String {
            case "HardBounce", "BadEmailAddress", "ManuallyDeactivated", "SpamNotification": kind = .hardBounce
            case "SpamComplaint": kind = .complained
            // An out-of-office reply is not a bounce; a block is the receiver's policy, maybe temporary.
            case "SoftBounce", "Transient", "DnsError", "MailboxFull", "Blocked": kind = .softBounce
            default: kind = nil
            }
        case "SpamComplaint": kind = .complained
        case "Open": kind = .opened
        case "Click": kind = .clicked
        default: kind = nil
        }
        guard let kind else { return [] }
        let stamp = o["BouncedAt"] ?? o["DeliveredAt"] ?? o["ReceivedAt"]
        let id = (o["ID"]).map { "\($0)" } ?? "\(record):\(messageID ?? ""):\(stamp.map { "\($0)" } ?? "")"
        let metadata = o["Metadata"] as? [String: Any]
        return [EmailEvent(id: "\(record):\(id)", kind: kind, providerMessageID: messageID,
                           deliveryID: (metadata?["delivery_id"] as? String).flatMap { Int64($0) },
                           address: (o["Email"] ?? o["Recipient"]) as? String, at: date(stamp) ?? now)]
    }

    /// An array of events: delivered, bounce (type bounce | blocked), dropped, deferred, spamreport, open, click, …
    static func sendgrid(_ json: Any, now: Date) throws -> [EmailEvent] {
        guard let list = json as? [[String: Any]] else { throw Invalid() }
        return list.compactMap { e in
            guard let event = e["event"] as? String, let id = e["sg_event_id"] as? String else { return nil }
            let kind: EmailEvent.Kind?
            switch event {
            case "delivered": kind = .delivered
            case "bounce": kind = (e["type"] as? String) == "blocked" ? .softBounce : .hardBounce
            case "spamreport": kind = .complained
            case "open": kind = .opened
            case "click": kind = .clicked
            default: kind = nil
            }
            guard let kind else { return nil }
            let messageID = (e["sg_message_id"] as? String).map { String($0.split(separator: ".", maxSplits: 1).first ?? "") }
            return EmailEvent(id: id, kind: kind, providerMessageID: messageID,
                              deliveryID: ((e["delivery_id"] as? String).flatMap { Int64($0) }) ?? (e["delivery_id"] as? Int).map(Int64.init),
                              address: e["email"] as? String, at: date(e["timestamp"]) ?? now)
        }
    }
}

/// Applies delivery events (a job, so the webhook answers at once): timestamps on the delivery
/// row, the suppression list, and a complaint mutes the creator for that member as an
/// unsubscribe would.
///
/// An event about an email whose row is not there yet is held back, not applied half: a fan-out
/// writes the rows of the emails it hands to the provider together with their outcomes, so a
/// fast provider's "delivered" (or a bounce, a complaint) can arrive first — by a second or two.
/// Such an event waits in a job of its own (10 s, doubling to 1 min) until its row appears, for at
/// most `holdFor` after the webhook brought it; then it is applied without a row (the address's
/// suppression still counts). Applied at once: events naming neither our id nor the provider's, and
/// those whose delivery id names a row already (it has its outcome: waiting changes nothing). The
/// window is short because events that will never find a row wait it out too: mail the account
/// sent from elsewhere, rows erased with their member, answers that carried no provider id.
struct EmailEventApplier: Sendable {
    struct Payload: Codable, Sendable {
        let provider: EmailProvider
        let events: [EmailEvent]
        /// When the webhook brought these events (absent in jobs queued before holding existed).
        var receivedAt: Date? = nil
        /// How many times these events were held back already.
        var holds: Int? = nil
    }

    static let holdFor: TimeInterval = 120
    static let holdRetry = Backoff(base: 10, cap: 60)

    let clock: AppClock
    let queue: JobQueue

    func run(_ job: Job, on db: any Database) async throws -> Worker.JobResult {
        let payload = try job.decodePayload(Payload.self)
        let received = payload.receivedAt ?? job.createdAt ?? .distantPast
        let mayHold = clock.now() < received.addingTimeInterval(Self.holdFor)
        // Each event with what it changes (and the host-platform webhook it emits) — or its hold — in one transaction.
        for event in payload.events {
            try await db.writeTransaction { tx in
                guard try await !apply(event, provider: payload.provider, holdingUnmatched: mayHold, on: tx) else { return }
                try await hold(event, provider: payload.provider, received: received, holds: (payload.holds ?? 0) + 1, on: tx)
            }
        }
        return .done
    }

    /// Queued under a key of the event and the hold's number: a job run again (after a crash, or a
    /// later event's failure) holds the same event once, not twice. The last try runs when the
    /// window ends, and applies it.
    private func hold(_ event: EmailEvent, provider: EmailProvider, received: Date, holds: Int, on db: any Database) async throws {
        let runAt = min(clock.now().addingTimeInterval(Self.holdRetry.delay(afterAttempt: holds, jitter: 1)),
                        received.addingTimeInterval(Self.holdFor))
        try await queue.enqueue(kind: .emailEvents, key: "email_events:\(provider.rawValue):held:\(holds):\(event.id.prefix(200))",
                                payload: Payload(provider: provider, events: [event], receivedAt: received, holds: holds),
                                runAt: runAt, on: db)
    }

    struct Match: Decodable {
        let id: Int64; let recipient_id: String; let email: String; let creator_id: String; let stream_id: String
        let provider_message_id: String?
    }

    /// Applies `event`; with `holdingUnmatched`, an event that names an email (by our id or the
    /// provider's) whose row is not there yet is left untouched and false returned.
    func apply(_ event: EmailEvent, provider: EmailProvider, holdingUnmatched: Bool, on db: any Database) async throws -> Bool {
        let sql = db.sql
        let now = clock.now()
        var match: Match?
        var ourIDNamesARow = false
        let base: SQLQueryString = """
            SELECT d.id, d.recipient_id, u.email, s.creator_id, d.stream_id, d.provider_message_id FROM deliveries d
            JOIN users u ON u.id = d.recipient_id JOIN streams s ON s.id = d.stream_id WHERE
            """
        if let id = event.deliveryID {
            match = try await sql.raw(base + " d.id = \(bind: id)").first(decoding: Match.self)
            ourIDNamesARow = match != nil
            // Our id must agree with the provider's, when both are known (an id in metadata is theirs to echo, not to invent).
            if let stored = match?.provider_message_id, let pid = event.providerMessageID, stored != pid { match = nil }
        }
        if match == nil, let pid = event.providerMessageID, !pid.isEmpty {
            match = try await sql.raw(base + " d.provider_message_id = \(bind: pid)").first(decoding: Match.self)
        }
        if match == nil && holdingUnmatched && !ourIDNamesARow && (event.deliveryID != nil || !(event.providerMessageID ?? "").isEmpty) {
            return false
        }
        if let m = match {
            let column: String = switch event.kind {
            case .delivered: "delivered_at"
            case .hardBounce, .softBounce: "bounced_at"
            case .complained: "complained_at"
            case .opened: "opened_at"
            case .clicked: "clicked_at"
            }
            try await sql.raw("""
                UPDATE deliveries SET \(ident: column) = COALESCE(\(ident: column), \(bind: event.at)),
                  bounce_type = CASE WHEN \(bind: event.kind == .hardBounce || event.kind == .softBounce) THEN \(bind: event.kind == .hardBounce ? "hard" : "soft") ELSE bounce_type END
                WHERE id = \(bind: m.id)
                """).run()
        }
        // The address: the one the delivery went to (the event's own when we cannot match it).
        guard let address = match?.email ?? event.address else { return true }
        let hash = EmailHash.of(address)
        let userID = match?.recipient_id
        switch event.kind {
        case .hardBounce:
            try await Suppression.suppress(hash: hash, userID: userID, reason: .hardBounce, now: now, on: sql)
            try await WebhookOutbox.emailEvent(.emailBounced, userID: userID, addressHash: hash, streamID: match?.stream_id, now: now, on: db)
        case .softBounce: try await Suppression.softBounce(hash: hash, userID: userID, now: now, on: sql)
        case .complained:
            try await Suppression.suppress(hash: hash, userID: userID, reason: .complaint, now: now, on: sql)
            try await WebhookOutbox.emailEvent(.emailComplained, userID: userID, addressHash: hash, streamID: match?.stream_id, now: now, on: db)
            if let m = match { try await NotificationMute.mute(member: m.recipient_id, creator: m.creator_id, on: db) }
        case .delivered: try await Suppression.delivered(hash: hash, now: now, on: sql)
        case .opened, .clicked: break
        }
        return true
    }
}
