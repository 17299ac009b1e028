import Fluent
import Foundation
import Mailer
import SQLKit

/// What happened to one email handed to a transport.
enum MailOutcome: Sendable, Equatable {
    /// Taken: the relay's reply, and the provider's message id when it gives one.
    case accepted(reply: String, providerID: String? = nil)
    /// Try again later (after `retryAfter` when the provider said so). A rate limit is not the
    /// recipient's failure: `countsAsAttempt: false` gives the attempt back.
    case transient(reason: String, retryAfter: TimeInterval? = nil, countsAsAttempt: Bool = true)
    /// This recipient will never take it: do not retry.
    case permanent(reason: String)
    /// Nothing to do with the recipient: this service cannot send right now (the provider refused
    /// our API key). The delivery goes back to the queue and the attempt is not counted.
    case paused(reason: String, retryAfter: TimeInterval)

    init(_ smtp: SMTPOutcome) {
        switch smtp {
        case .accepted(let reply): self = .accepted(reply: reply)
        case .transient(let reason): self = .transient(reason: reason)
        case .permanent(let reason): self = .permanent(reason: reason)
        }
    }
}

/// Where rendered emails go: an SMTP relay, a provider's HTTPS API, or the development outbox.
protocol MailTransport: Sendable {
    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome
    func shutdown() async
    /// Why this transport cannot send at all right now (nil: it can). The worker claims no email
    /// while it is set, and /ready reports it.
    var pausedReason: String? { get }
    /// For /ready: smtp, outbox, resend, postmark, sendgrid.
    var name: String { get }
}

extension MailTransport {
    var pausedReason: String? { nil }
}

struct SMTPTransport: MailTransport {
    let client: SMTPClient
    var name: String { "smtp" }

    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        let address = message.to.first?.address ?? ""
        return MailOutcome(await client.send(message)[address] ?? .transient(reason: "no outcome for recipient"))
    }

    func shutdown() async { await client.shutdown() }
}

/// EMAIL_TRANSPORT=outbox: keeps the rendered message in the database instead of sending it.
struct OutboxTransport: MailTransport {
    let now: @Sendable () -> Date
    var name: String { "outbox" }

    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        do {
            try await db.sql.insert(into: "outbox_messages")
                .columns("delivery_id", "recipient_id", "to_address", "subject", "raw", "text_body", "html_body", "ics", "created_at")
                .values(SQLBind(deliveryID), SQLBind(recipientID), SQLBind(message.to.first?.address ?? ""),
                        SQLBind(message.subject), SQLBind(message.render()), SQLBind(message.text), SQLBind(message.html),
                        SQLBind(message.calendar?.ics), SQLBind(now()))
                .run()
            return .accepted(reply: "250 stored in outbox")
        } catch {
            return .transient(reason: "outbox write failed")
        }
    }

    func shutdown() async {}
}
