import Fluent
import Foundation
import Mailer
import SQLKit

/// Where rendered emails go: a real relay, or the development outbox.
protocol MailTransport: Sendable {
    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> SMTPOutcome
    func shutdown() async
}

struct SMTPTransport: MailTransport {
    let client: SMTPClient

    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> SMTPOutcome {
        let address = message.to.first?.address ?? ""
        return await client.send(message)[address] ?? .transient(reason: "no outcome for recipient")
    }

    func shutdown() async { await client.shutdown() }
}

/// EMAIL_TRANSPORT=outbox: keeps the rendered message in the database instead of sending it.
struct OutboxTransport: MailTransport {
    let now: @Sendable () -> Date

    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> SMTPOutcome {
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
