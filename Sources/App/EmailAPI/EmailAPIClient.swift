import Crypto
import Foundation
import Mailer
import NIOCore
import Vapor

/// One email as an HTTPS API sends it (the rendered MailMessage plus our delivery id).
struct OutgoingEmail: Sendable {
    let deliveryID: Int64
    let message: MailMessage
}

/// What one API call told us besides the per-email outcomes: when to call again.
struct CallResult: Sendable {
    var outcomes: [MailOutcome]
    /// Retry-After / ratelimit-reset: no call before this many seconds from now.
    var waitSeconds: TimeInterval? = nil
}

/// A provider's send API: turns a batch of emails into one HTTP call and the answer into one
/// outcome per email, in order.
protocol EmailAPIClient: Sendable {
    var provider: EmailProvider { get }
    func send(_ batch: [OutgoingEmail]) async -> CallResult
}

/// What the three clients share: the HTTP call (timeout, bounded retries of the *same* request
/// with the same Idempotency-Key on timeouts, 429 and 5xx), and the reading of rate-limit headers.
struct EmailAPIHTTP: Sendable {
    let client: any Client
    let settings: EmailAPISettings
    /// Retries of one call inside the transport before its emails go back to the queue.
    static let attempts = 3

    enum Answer: Sendable {
        case response(status: UInt, body: Data, headers: HTTPHeaders)
        case unreachable(String)
    }

    /// POSTs `body` (JSON) to `path`, repeating the identical request (honouring Retry-After) up to
    /// `attempts` times: on transport errors, 429 and 5xx when `idempotent` (the call carries an
    /// Idempotency-Key), else only on 429 and 503. Returns the last answer and the wait it asked for.
    func post(_ path: String, body: Data, headers extra: HTTPHeaders, idempotent: Bool = false) async -> (Answer, TimeInterval?) {
        var headers = extra
        headers.contentType = .json
        headers.replaceOrAdd(name: .accept, value: "application/json")
        headers.replaceOrAdd(name: .userAgent, value: "livestream-backend")
        var last: (Answer, TimeInterval?) = (.unreachable("not sent"), nil)
        for attempt in 1...Self.attempts {
            let request = ClientRequest(method: .POST, url: URI(string: settings.baseURL + path), headers: headers,
                                        body: ByteBuffer(data: body), timeout: .milliseconds(Int64(settings.timeoutSeconds * 1000)))
            do {
                let response = try await client.send(request).get()
                let data = response.body.map { Data(buffer: $0) } ?? Data()
                let wait = Self.waitSeconds(response.headers, status: response.status.code)
                last = (.response(status: response.status.code, body: data, headers: response.headers), wait)
                // Repeat the call in place only when nothing can have been sent twice: Resend dedupes by
                // Idempotency-Key; the others only on 429 and 503 (refused before sending).
                let code = response.status.code
                let safe = idempotent ? (code == 429 || code >= 500) : (code == 429 || code == 503)
                guard safe, attempt < Self.attempts else { return last }
                // A long wait is the pacer's business (the emails go back to the queue); a short one is waited out here.
                guard (wait ?? 0) <= 5 else { return last }
                try? await Task.sleep(for: .milliseconds(Int64(max(wait ?? 0, 0.2 * Double(attempt)) * 1000)))
            } catch {
                last = (.unreachable("\(settings.provider.rawValue) unreachable: \(String(describing: type(of: error)))"), nil)
                // A timeout may have been a send: only an idempotent call is repeated at once.
                guard idempotent, attempt < Self.attempts else { return last }
                try? await Task.sleep(for: .milliseconds(Int64(200 * attempt)))
            }
        }
        return last
    }

    /// Retry-After (seconds or an HTTP date), else `ratelimit-reset` when nothing remains (Resend's
    /// headers), else nil.
    static func waitSeconds(_ headers: HTTPHeaders, status: UInt) -> TimeInterval? {
        if let raw = headers.first(name: .retryAfter) {
            if let seconds = Double(raw.trimmingCharacters(in: .whitespaces)), seconds >= 0 { return min(seconds, 3600) }
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
            if let date = f.date(from: raw) { return min(max(0, date.timeIntervalSinceNow), 3600) }
        }
        if headers.first(name: "ratelimit-remaining").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) == 0 || status == 429,
           let reset = headers.first(name: "ratelimit-reset").flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) {
            return min(max(0, reset), 3600)
        }
        return status == 429 ? 1 : nil
    }

    /// The outcome of every email of a call that did not succeed as a whole.
    func failure(_ answer: Answer, wait: TimeInterval?, count: Int) -> [MailOutcome] {
        let outcome: MailOutcome
        switch answer {
        case .unreachable(let why):
            outcome = .transient(reason: why)
        case .response(let status, let body, _):
            let detail = String(decoding: body.prefix(300), as: UTF8.self)
            switch status {
            case 401, 403:
                outcome = .paused(reason: "\(settings.provider.rawValue) refused the API key (HTTP \(status)): check EMAIL_SERVICE_API_KEY",
                                  retryAfter: settings.pauseSeconds)
            case 429:
                outcome = .transient(reason: "\(settings.provider.rawValue) rate limit (429)", retryAfter: wait, countsAsAttempt: false)
            case 408, 409, 425, 500...:
                outcome = .transient(reason: "\(settings.provider.rawValue) answered \(status): \(detail)", retryAfter: wait)
            default:
                outcome = .permanent(reason: "\(settings.provider.rawValue) rejected the email (HTTP \(status)): \(detail)")
            }
        }
        return Array(repeating: outcome, count: count)
    }

    /// `Name <address>` with the display name quoted when it needs to be (JSON APIs take this form).
    static func display(_ address: MailAddress) -> String {
        guard let name = address.name?.trimmingCharacters(in: .whitespaces), !name.isEmpty else { return address.address }
        let clean = name.filter { !$0.isNewline && $0 != "\r" }
        let needsQuotes = clean.contains { "()<>[]:;@\\,.\"".contains($0) }
        let shown = needsQuotes ? "\"" + clean.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" : clean
        return "\(shown) <\(address.address)>"
    }

    static func encode(_ value: some Encodable) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)) ?? Data("{}".utf8)
    }
}

extension MailMessage {
    /// The custom headers an API call carries (List-Unsubscribe and List-Unsubscribe-Post).
    var apiHeaders: [(String, String)] { headers.map { ($0.name, $0.value) } }
    var icsBase64: String? { calendar.map { Data($0.ics.utf8).base64EncodedString() } }
}

// MARK: Resend

/// `POST /emails/batch` (≤ 100, no attachments) and `POST /emails` (one email, with the .ics).
/// Every call carries an `Idempotency-Key` derived from its exact body, so the same call retried —
/// in this process after a timeout, or by another worker after a crash that re-renders the same
/// emails — is answered by Resend with the first result instead of sending again.
struct ResendClient: EmailAPIClient {
    let http: EmailAPIHTTP
    var provider: EmailProvider { .resend }

    struct Email: Encodable {
        let from: String
        let to: [String]
        let subject: String
        let text: String
        let html: String?
        let headers: [String: String]
        let attachments: [Attachment]?
        struct Attachment: Encodable { let filename: String; let content: String }
    }
    struct Sent: Decodable { let id: String }
    struct BatchAnswer: Decodable { let data: [Sent] }

    static func email(_ m: MailMessage, attachment: Bool) -> Email {
        Email(from: EmailAPIHTTP.display(m.from), to: m.to.map(\.address), subject: m.subject, text: m.text, html: m.html,
              headers: Dictionary(m.apiHeaders, uniquingKeysWith: { a, _ in a }),
              attachments: attachment ? m.calendar.map { [.init(filename: $0.filename, content: Data($0.ics.utf8).base64EncodedString())] } : nil)
    }

    static func idempotencyKey(_ body: Data) -> String {
        "lsb-" + Hex.lower(SHA256.hash(data: body).prefix(16))
    }

    func send(_ batch: [OutgoingEmail]) async -> CallResult {
        // The batch endpoint takes no attachments: the invite's .ics is left out there (the email
        // keeps its "Add to calendar" link); a batch of one goes to /emails with it.
        let single = batch.count == 1
        let body = single ? EmailAPIHTTP.encode(Self.email(batch[0].message, attachment: true))
            : EmailAPIHTTP.encode(batch.map { Self.email($0.message, attachment: false) })
        var headers = HTTPHeaders()
        headers.bearerAuthorization = .init(token: http.settings.apiKey)
        headers.replaceOrAdd(name: "Idempotency-Key", value: Self.idempotencyKey(body))
        let (answer, wait) = await http.post(single ? "/emails" : "/emails/batch", body: body, headers: headers, idempotent: true)
        guard case .response(let status, let data, _) = answer, status == 200 else {
            // A batch Resend refused as invalid: one bad email must not sink the others — send them one by one.
            if case .response(let status, _, _) = answer, [400, 422].contains(status), batch.count > 1 {
                var outcomes: [MailOutcome] = []
                for email in batch { outcomes += await send([email]).outcomes }
                return CallResult(outcomes: outcomes, waitSeconds: wait)
            }
            return CallResult(outcomes: http.failure(answer, wait: wait, count: batch.count), waitSeconds: wait)
        }
        if single {
            let id = (try? JSONDecoder().decode(Sent.self, from: data))?.id
            return CallResult(outcomes: [.accepted(reply: "resend 200 \(id ?? "")", providerID: id)], waitSeconds: wait)
        }
        guard let ids = try? JSONDecoder().decode(BatchAnswer.self, from: data).data, ids.count == batch.count else {
            return CallResult(outcomes: Array(repeating: .accepted(reply: "resend 200 (no ids in the answer)"), count: batch.count), waitSeconds: wait)
        }
        return CallResult(outcomes: ids.map { .accepted(reply: "resend 200 \($0.id)", providerID: $0.id) }, waitSeconds: wait)
    }
}

// MARK: Postmark

/// `POST /email/batch` (≤ 500): HTTP 200 even when some messages fail — each element's ErrorCode
/// decides (0 sent; 406 inactive recipient and the other request errors are permanent; 429 later).
struct PostmarkClient: EmailAPIClient {
    let http: EmailAPIHTTP
    var provider: EmailProvider { .postmark }

    struct Message: Encodable {
        let From: String, To: String, Subject: String, TextBody: String, HtmlBody: String?
        let Headers: [Header], Attachments: [Attachment]?, MessageStream: String
        let Metadata: [String: String]
        struct Header: Encodable { let Name: String; let Value: String }
        struct Attachment: Encodable { let Name: String; let Content: String; let ContentType: String }
    }
    struct Result: Decodable { let ErrorCode: Int; let Message: String?; let MessageID: String? }

    func send(_ batch: [OutgoingEmail]) async -> CallResult {
        let messages = batch.map { e in
            let m = e.message
            return Message(From: EmailAPIHTTP.display(m.from), To: m.to.map(\.address).joined(separator: ","), Subject: m.subject, TextBody: m.text,
                           HtmlBody: m.html, Headers: m.apiHeaders.map { .init(Name: $0.0, Value: $0.1) },
                           Attachments: m.calendar.map { [.init(Name: $0.filename, Content: Data($0.ics.utf8).base64EncodedString(),
                                                                ContentType: "text/calendar; method=\($0.method.rawValue)")] },
                           MessageStream: http.settings.messageStream, Metadata: ["delivery_id": String(e.deliveryID)])
        }
        var headers = HTTPHeaders()
        headers.replaceOrAdd(name: "X-Postmark-Server-Token", value: http.settings.apiKey)
        let (answer, wait) = await http.post("/email/batch", body: EmailAPIHTTP.encode(messages), headers: headers)
        guard case .response(200, let data, _) = answer, let results = try? JSONDecoder().decode([Result].self, from: data),
              results.count == batch.count else {
            return CallResult(outcomes: http.failure(answer, wait: wait, count: batch.count), waitSeconds: wait)
        }
        return CallResult(outcomes: results.map { r in
            switch r.ErrorCode {
            case 0: .accepted(reply: "postmark 0 \(r.MessageID ?? "")", providerID: r.MessageID)
            case 10: .paused(reason: "postmark refused the server token (ErrorCode 10): check EMAIL_SERVICE_API_KEY", retryAfter: http.settings.pauseSeconds)
            case 429: .transient(reason: "postmark 429: \(r.Message ?? "")", retryAfter: wait, countsAsAttempt: false)
            default: .permanent(reason: "postmark \(r.ErrorCode): \(r.Message ?? "")")
            }
        }, waitSeconds: wait)
    }
}

// MARK: SendGrid

/// `POST /v3/mail/send`, one email per call (202 + X-Message-Id). Our delivery id rides along in
/// `custom_args`, which SendGrid echoes in every event.
struct SendGridClient: EmailAPIClient {
    let http: EmailAPIHTTP
    var provider: EmailProvider { .sendgrid }

    struct Mail: Encodable {
        let personalizations: [Personalization]
        let from: Address
        let subject: String
        let content: [Content]
        let headers: [String: String]
        let attachments: [Attachment]?
        let custom_args: [String: String]
        struct Personalization: Encodable { let to: [Address] }
        struct Address: Encodable { let email: String; let name: String? }
        struct Content: Encodable { let type: String; let value: String }
        struct Attachment: Encodable { let content: String; let filename: String; let type: String; let disposition: String }
    }

    func send(_ batch: [OutgoingEmail]) async -> CallResult {
        var outcomes: [MailOutcome] = []
        var lastWait: TimeInterval?
        for e in batch {
            let m = e.message
            let mail = Mail(personalizations: [.init(to: m.to.map { .init(email: $0.address, name: nil) })],
                            from: .init(email: m.from.address, name: m.from.name), subject: m.subject,
                            content: [.init(type: "text/plain", value: m.text)] + (m.html.map { [.init(type: "text/html", value: $0)] } ?? []),
                            headers: Dictionary(m.apiHeaders, uniquingKeysWith: { a, _ in a }),
                            attachments: m.calendar.map { [.init(content: Data($0.ics.utf8).base64EncodedString(), filename: $0.filename,
                                                                  type: "text/calendar", disposition: "attachment")] },
                            custom_args: ["delivery_id": String(e.deliveryID)])
            var headers = HTTPHeaders()
            headers.bearerAuthorization = .init(token: http.settings.apiKey)
            let (answer, wait) = await http.post("/v3/mail/send", body: EmailAPIHTTP.encode(mail), headers: headers)
            lastWait = wait ?? lastWait
            if case .response(let status, _, let h) = answer, (200..<300).contains(status) {
                let id = h.first(name: "X-Message-Id")
                outcomes.append(.accepted(reply: "sendgrid \(status) \(id ?? "")", providerID: id))
            } else {
                outcomes += http.failure(answer, wait: wait, count: 1)
            }
        }
        return CallResult(outcomes: outcomes, waitSeconds: lastWait)
    }
}
