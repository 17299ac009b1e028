import Foundation

/// Where and how to relay mail. Read from the environment by `fromEnvironment`.
public struct SMTPConfiguration: Sendable, Equatable {
    public enum Security: String, Sendable { case starttls, tls, none }

    public var host: String
    public var port: Int
    public var security: Security
    public var username: String?
    public var password: String?
    /// Extra CA (PEM file) trusted on top of the system roots; tests point it at their own CA.
    public var caFile: String?
    /// Name announced in EHLO.
    public var heloName: String
    public var timeouts: Timeouts
    /// Mechanisms to use, best first, among those the server offers.
    public var authMechanisms: [AuthMechanism] = [.plain, .login]
    /// The default sender (EMAIL_FROM, the original design's name).
    public var from: MailAddress?

    public enum AuthMechanism: String, Sendable { case plain = "PLAIN", login = "LOGIN" }

    public struct Timeouts: Sendable, Equatable {
        public var connect: TimeInterval
        public var reply: TimeInterval
        /// After the final "." of DATA servers may scan the message; give them longer.
        public var dataEnd: TimeInterval
        public init(connect: TimeInterval = 10, reply: TimeInterval = 30, dataEnd: TimeInterval = 120) {
            self.connect = connect; self.reply = reply; self.dataEnd = dataEnd
        }
    }

    public init(host: String, port: Int, security: Security, username: String? = nil, password: String? = nil,
                caFile: String? = nil, heloName: String = "localhost", timeouts: Timeouts = Timeouts()) {
        self.host = host; self.port = port; self.security = security; self.username = username
        self.password = password; self.caFile = caFile; self.heloName = heloName; self.timeouts = timeouts
    }

    /// The relays of the providers the original design could use; the API key is the password.
    public static func provider(_ name: String) -> (host: String, port: Int, username: String?)? {
        switch name.lowercased() {
        case "sendgrid": ("smtp.sendgrid.net", 587, "apikey")
        case "resend": ("smtp.resend.com", 587, "resend")
        case "postmark": ("smtp.postmarkapp.com", 587, nil) // the server token is both user and password
        default: nil
        }
    }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    /// nil when mail is not configured (neither SMTP_HOST nor EMAIL_PROVIDER).
    public static func fromEnvironment(_ env: [String: String]) throws -> SMTPConfiguration? {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        let password = value("SMTP_PASSWORD") ?? value("EMAIL_SERVICE_API_KEY")
        var host = value("SMTP_HOST")
        var port: Int?
        var username = value("SMTP_USERNAME")
        if let providerName = value("EMAIL_PROVIDER") {
            guard let preset = provider(providerName) else {
                throw Error(description: "EMAIL_PROVIDER must be sendgrid, resend or postmark")
            }
            host = host ?? preset.host
            port = preset.port
            username = username ?? preset.username ?? password
        }
        guard let host else { return nil }
        if let raw = value("SMTP_PORT") {
            guard let p = Int(raw), (1...65535).contains(p) else { throw Error(description: "SMTP_PORT must be a port number") }
            port = p
        }
        let security: Security
        if let raw = value("SMTP_SECURITY") {
            guard let s = Security(rawValue: raw.lowercased()) else { throw Error(description: "SMTP_SECURITY must be starttls, tls or none") }
            security = s
        } else {
            security = port == 465 ? .tls : (port == 25 ? .none : .starttls)
        }
        var config = SMTPConfiguration(host: host, port: port ?? (security == .tls ? 465 : 587), security: security,
                                       username: username, password: password, caFile: value("SMTP_CA_FILE"),
                                       heloName: value("SMTP_HELO_NAME") ?? "localhost")
        if let raw = value("EMAIL_FROM") {
            guard let from = MailAddress(parsing: raw) else { throw Error(description: "EMAIL_FROM must be an address or 'Name <address>'") }
            config.from = from
        }
        return config
    }
}

/// What happened to one recipient.
public enum SMTPOutcome: Sendable, Equatable {
    /// The server took responsibility for the message (its final reply, e.g. `250 2.0.0 Ok: queued as …`).
    case accepted(reply: String)
    /// Try again later: 4xx replies, refused or dropped connections, timeouts, TLS failures.
    case transient(reason: String)
    /// Do not retry: 5xx replies (unknown mailbox, bad credentials, …).
    case permanent(reason: String)

    public var isAccepted: Bool { if case .accepted = self { true } else { false } }
    public var isTransient: Bool { if case .transient = self { true } else { false } }
    public var isPermanent: Bool { if case .permanent = self { true } else { false } }
}

public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    public let code: Int
    public let lines: [String]
    public var description: String { lines.map { "\(code) \($0)" }.joined(separator: " / ") }
    var isPositive: Bool { (200..<400).contains(code) }
    var isTransient: Bool { (400..<500).contains(code) }

    /// The outcome a failed reply means for a recipient.
    var failure: SMTPOutcome { code >= 500 ? .permanent(reason: description) : .transient(reason: description) }
    /// The outcome the reply to a message's end means for each recipient accepted before it.
    var dataOutcome: SMTPOutcome { code / 100 == 2 ? .accepted(reply: description) : failure }
}
