import Foundation
import Mailer
import Vapor

/// Typed settings, read once from the environment (Vapor also loads `.env` files).
struct AppConfig: Sendable {
    enum DatabaseChoice: Sendable, Equatable {
        case sqliteFile(String)
        case sqliteMemory
        case postgres(url: String)
    }

    var database: DatabaseChoice
    var jwt: JWTSettings
    var adminAPIKey: String?
    var agora: AgoraSettings
    var frontendURL: String?
    var corsAllowedOrigins: [String]
    /// Development conveniences: demo data and printed dev tokens.
    var isDevelopment: Bool
    var mail: MailSettings
    var worker: WorkerSettings
    /// Recording storage; nil = feature off.
    var s3: S3Settings? = nil
    var rateLimits = RateLimits()
    /// AGORA_NCS_SECRET: turns on POST /api/webhooks/agora.
    var ncsSecret: String? = nil
    /// HOST_GRACE_MINUTES: how long a live stream waits for its host to come back.
    var hostGrace: TimeInterval = 300
    /// Agora Cloud Recording REST; nil = feature off.
    var cloudRecording: CloudRecordingSettings? = nil
    /// REMINDER_LEAD_MINUTES before the start (default 15).
    var reminderLead: TimeInterval = 900
    /// Bearer secret of the cron endpoints; nil turns them off.
    var cronSecret: String? = nil
    /// TOKEN_CACHE_SECONDS: how stale the token path's snapshots may be (0 = off).
    var tokenCacheSeconds: Double = 2
    /// DATABASE_MAX_CONNECTIONS_PER_LOOP (PostgreSQL pool size per event loop).
    var databaseConnectionsPerLoop = 4
    /// The email providers' delivery-event webhooks (each off until its secret is set).
    var emailWebhooks = EmailWebhookSecrets()
    /// SHUTDOWN_DRAIN_SECONDS: on SIGTERM, how long requests in flight may take to finish.
    var shutdownDrainSeconds: TimeInterval = 10
    /// TRUSTED_PROXIES: peers whose X-Forwarded-For is believed (empty: key on the peer address).
    var trustedProxies: [CIDR] = []
    /// METRICS_TOKEN: bearer token for /metrics and /ready (nil: both public, as in development).
    var metricsToken: String? = nil
    /// Outgoing webhooks to the host platform.
    var webhooks = WebhookSettings()
    /// APNs and FCM (each off until configured).
    var push = PushSettings()
    /// REPLAY_URL_ORIGINS (plus the S3 bucket / S3_PUBLIC_BASE_URL): where a creator's replay URL may point.
    var replayOrigins: [String] = []
    /// The origins CORS allows: FRONTEND_URL (in development, its default) and CORS_ALLOWED_ORIGINS.
    var allowedOrigins: [String] {
        var origins = frontendURL.map { [$0] } ?? (isDevelopment ? [AppConfig.developmentFrontend] : [])
        for origin in corsAllowedOrigins where !origins.contains(origin) { origins.append(origin) }
        return origins
    }
    static let developmentFrontend = "http://localhost:3000"
    /// GET /dev/outbox: development only.
    var devOutbox: Bool { isDevelopment }

    struct MailSettings: Sendable {
        enum Transport: Sendable, Equatable {
            case smtp(SMTPConfiguration)
            /// A provider's HTTPS API (Resend, Postmark, SendGrid), batched and paced.
            case api(EmailAPISettings)
            /// Rendered and stored, not sent (development default; the dev outbox).
            case outbox
            /// No relay configured: deliveries wait in the queue until one is.
            case disabled

            /// Emails really leave (production then needs EMAIL_FROM and PUBLIC_BASE_URL).
            var sends: Bool {
                switch self {
                case .smtp, .api: true
                case .outbox, .disabled: false
                }
            }
        }
        var transport: Transport
        var from: MailAddress
        /// Links in emails point here (`{FRONTEND_URL}/live/{streamId}`).
        var frontendURL: String
        /// This API's public URL, for unsubscribe links (PUBLIC_BASE_URL, or BACKEND_URL as the original design named it).
        var publicBaseURL: String
        var retryBaseSeconds: TimeInterval
        var maxAttempts: Int
        var smtpConnections: Int
    }

    struct WorkerSettings: Sendable {
        /// Run the worker loop inside `serve` (RUN_WORKER=false for API-only replicas).
        var runInServe: Bool
        /// WORKER_MAX_IN_FLIGHT: emails one worker has claimed and not yet finished (the duplicate bound on a crash).
        var maxInFlight: Int
        var leaseSeconds: TimeInterval
        /// WORKER_SHUTDOWN_SECONDS: on SIGTERM, how long in-flight work may take before its rows are released.
        var shutdownGraceSeconds: TimeInterval = 20
    }

    struct JWTSettings: Sendable {
        var secret: String
        var issuer: String?
        var audience: String?
        /// JWT_MAX_AGE_SECONDS: the longest lifetime a token may claim (exp − iat, or exp − now without iat).
        var maxAgeSeconds: TimeInterval = 7 * 86_400
        /// Clock skew tolerated on nbf and iat.
        var leewaySeconds: TimeInterval = 60
    }

    struct AgoraSettings: Sendable {
        var appId: String
        var appCertificate: String
        /// Token and privilege lifetime in seconds (relative to issue time), 1…86 400.
        var tokenTTLSeconds: UInt32
        /// TOKEN_EARLY_JOIN_MINUTES: members get tokens for a scheduled stream from this long before its start.
        var earlyJoinSeconds: TimeInterval = 900
        /// AGORA_RTM_ENABLED: token responses also carry an RTM token (chat, raise-hand signalling).
        var rtmEnabled = false
    }

    struct Error: Swift.Error, CustomStringConvertible {
        let problems: [String]
        var description: String { "Invalid configuration:\n" + problems.map { "  - \($0)" }.joined(separator: "\n") }
    }

    /// Production needs JWT_SECRET, AGORA_APP_ID and AGORA_APP_CERTIFICATE; development fills
    /// the gaps with secrets generated once and kept under `dataDirectory`.
    static func load(environment: Environment, dataDirectory: String? = nil, get: (String) -> String? = Environment.get) throws -> AppConfig {
        try load(environment: environment, arguments: environment.arguments,
                 dataDirectory: dataDirectory ?? get("DATA_DIRECTORY").flatMap { $0.isEmpty ? nil : $0 } ?? "data", get: get)
    }

    /// `arguments`: the command line (`serve --port 9000`), for the default public URL.
    static func load(environment: Environment, arguments: [String], dataDirectory: String = "data",
                     get: (String) -> String? = Environment.get) throws -> AppConfig {
        func value(_ name: String) -> String? {
            guard let v = get(name)?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
            return v
        }
        var problems: [String] = []
        func number(_ key: String, in range: ClosedRange<Double>, default fallback: Double) -> Double {
            guard let raw = value(key) else { return fallback }
            guard let n = Double(raw), range.contains(n) else {
                problems.append("\(key) must be a number in \(Int(range.lowerBound))–\(Int(range.upperBound))")
                return fallback
            }
            return n
        }
        let production = environment == .production
        let dev: DevSecrets? = production ? nil : try DevSecrets.loadOrCreate(directory: dataDirectory)

        let database: DatabaseChoice
        if let url = value("DATABASE_URL") {
            if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
                database = .postgres(url: url)
            } else {
                problems.append("DATABASE_URL must be a postgres:// or postgresql:// URL (unset it to use SQLite)")
                database = .sqliteMemory
            }
        } else {
            database = .sqliteFile(value("SQLITE_PATH") ?? "\(dataDirectory)/app.sqlite")
        }

        var missing: [String] = []
        let jwtSecret = value("JWT_SECRET") ?? dev?.jwtSecret
        let appId = value("AGORA_APP_ID") ?? dev?.agoraAppId
        let certificate = value("AGORA_APP_CERTIFICATE") ?? dev?.agoraAppCertificate
        if jwtSecret == nil { missing.append("JWT_SECRET") }
        if appId == nil { missing.append("AGORA_APP_ID") }
        if certificate == nil { missing.append("AGORA_APP_CERTIFICATE") }
        if !missing.isEmpty { problems.append("missing required setting(s) for production: \(missing.joined(separator: ", "))") }
        // jwt-kit asserts on HMAC keys shorter than the SHA-256 output.
        if let jwtSecret, jwtSecret.utf8.count < 32 { problems.append("JWT_SECRET must be at least 32 bytes") }
        if let appId, !isHex32(appId) { problems.append("AGORA_APP_ID must be the 32-character hex App ID") }
        if let certificate, !isHex32(certificate) { problems.append("AGORA_APP_CERTIFICATE must be the 32-character hex App Certificate") }

        var ttl: UInt32 = 3600
        if let raw = value("AGORA_TOKEN_TTL_SECONDS") {
            if let n = UInt32(raw), (1...86_400).contains(n) { ttl = n } else {
                problems.append("AGORA_TOKEN_TTL_SECONDS must be an integer between 1 and 86400")
            }
        }
        let adminKey = value("ADMIN_API_KEY") ?? dev?.adminAPIKey
        if let adminKey, adminKey.utf8.count < 16 { problems.append("ADMIN_API_KEY must be at least 16 characters") }

        let frontend = value("FRONTEND_URL").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let origins = (value("CORS_ALLOWED_ORIGINS") ?? "").split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }

        let localBase = "http://localhost:\(listeningPort(arguments: arguments, environmentPort: value("PORT")))"
        let mail = loadMail(value: value, production: production, frontend: frontend, localBase: localBase, problems: &problems)
        // Batching APIs need room for a batch being sent while the next one fills: two batches in flight.
        let inFlightDefault: Double = if case .api(let a) = mail.transport { Double(min(1000, max(64, 2 * a.provider.maxBatch))) } else { 64 }
        var worker = WorkerSettings(runInServe: (value("RUN_WORKER") ?? "true").lowercased() != "false",
                                    maxInFlight: Int(number("WORKER_MAX_IN_FLIGHT", in: 1...1000, default: inFlightDefault)), leaseSeconds: 60)
        worker.shutdownGraceSeconds = number("WORKER_SHUTDOWN_SECONDS", in: 0...600, default: 20)
        let cacheSeconds = number("TOKEN_CACHE_SECONDS", in: 0...10, default: 2)
        let poolSize = Int(number("DATABASE_MAX_CONNECTIONS_PER_LOOP", in: 1...100, default: 4))

        var lead: TimeInterval = 900
        if let raw = value("REMINDER_LEAD_MINUTES") {
            if let n = Int(raw), (1...1440).contains(n) { lead = TimeInterval(n * 60) } else { problems.append("REMINDER_LEAD_MINUTES must be 1–1440") }
        }
        let s3 = S3Settings.load(value: value, problems: &problems)
        let rateLimits = RateLimits.load(value: value, problems: &problems)
        let cron = value("CRON_SECRET")
        if let cron, cron.utf8.count < 16 { problems.append("CRON_SECRET must be at least 16 characters") }

        let jwtMaxAge = number("JWT_MAX_AGE_SECONDS", in: 60...31_536_000, default: 7 * 86_400)
        var trusted: [CIDR] = []
        for item in (value("TRUSTED_PROXIES") ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            if let list = CIDR.named(item) { trusted += list } else if let cidr = CIDR(item) { trusted.append(cidr) } else {
                problems.append("TRUSTED_PROXIES: '\(item.prefix(64))' is not an IP address or CIDR range (or 'private')")
            }
        }
        let drain = number("SHUTDOWN_DRAIN_SECONDS", in: 0...300, default: 10)
        let emailWebhooks = EmailWebhookSecrets.load(value: value, problems: &problems)
        let metricsToken = value("METRICS_TOKEN")
        if let metricsToken, metricsToken.utf8.count < 16 { problems.append("METRICS_TOKEN must be at least 16 characters") }
        var replayOrigins: [String] = []
        for item in (value("REPLAY_URL_ORIGINS") ?? "").split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            if let origin = ReplayOrigins.origin(of: item) { replayOrigins.append(origin) } else {
                problems.append("REPLAY_URL_ORIGINS: '\(item.prefix(64))' is not an https origin")
            }
        }

        let earlyJoin = number("TOKEN_EARLY_JOIN_MINUTES", in: 0...1440, default: 15) * 60
        let webhooks = WebhookSettings.load(value: value, development: environment == .development, problems: &problems)
        let push = PushSettings.load(value: value, problems: &problems)
        guard problems.isEmpty else { throw Error(problems: problems) }
        return AppConfig(
            database: database,
            jwt: JWTSettings(secret: jwtSecret!, issuer: value("JWT_ISSUER"), audience: value("JWT_AUDIENCE"), maxAgeSeconds: jwtMaxAge),
            adminAPIKey: adminKey,
            agora: AgoraSettings(appId: appId!, appCertificate: certificate!, tokenTTLSeconds: ttl,
                                 earlyJoinSeconds: earlyJoin,
                                 rtmEnabled: (value("AGORA_RTM_ENABLED") ?? "false").lowercased() == "true"),
            frontendURL: frontend,
            corsAllowedOrigins: origins,
            isDevelopment: environment == .development,
            mail: mail,
            worker: worker,
            s3: s3,
            rateLimits: rateLimits,
            ncsSecret: value("AGORA_NCS_SECRET"),
            hostGrace: TimeInterval((value("HOST_GRACE_MINUTES").flatMap(Int.init).map { min(max($0, 1), 240) } ?? 5) * 60),
            cloudRecording: CloudRecordingSettings.load(value: value),
            reminderLead: lead,
            cronSecret: cron,
            tokenCacheSeconds: cacheSeconds,
            databaseConnectionsPerLoop: poolSize,
            emailWebhooks: emailWebhooks,
            shutdownDrainSeconds: drain,
            trustedProxies: trusted,
            metricsToken: metricsToken,
            webhooks: webhooks,
            push: push,
            replayOrigins: replayOrigins
        )
    }

    /// The port `serve` will listen on: `--port N` / `-p N` / `--bind host:N`, else PORT, else 8080.
    static func listeningPort(arguments: [String], environmentPort: String?) -> Int {
        var port = environmentPort.flatMap(Int.init) ?? 8080
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let arg = arguments[i]
            let next = i + 1 < arguments.endIndex ? arguments[i + 1] : nil
            if arg == "--port" || arg == "-p", let n = next.flatMap(Int.init) { port = n }
            if arg.hasPrefix("--port="), let n = Int(arg.dropFirst(7)) { port = n }
            if arg == "--bind" || arg == "-b", let n = next?.split(separator: ":").last.flatMap({ Int($0) }) { port = n }
            i += 1
        }
        return port
    }

    /// The address `serve` will bind: `--hostname H` / `-H H` / `--bind H:port`, else Vapor's
    /// default (127.0.0.1, or 0.0.0.0 as configure sets in production).
    static func listeningHost(arguments: [String], default fallback: String) -> String {
        var host = fallback
        for (i, arg) in arguments.enumerated() {
            let next = i + 1 < arguments.count ? arguments[i + 1] : nil
            if arg == "--hostname" || arg == "-H", let next { host = next }
            if arg.hasPrefix("--hostname=") { host = String(arg.dropFirst(11)) }
            if arg == "--bind" || arg == "-b", let next, let h = next.split(separator: ":").first { host = String(h) }
            if arg == "--unix-socket" { host = "localhost" } // a socket file is as local as it gets
        }
        return host
    }

    /// 127.0.0.0/8, ::1 and "localhost": development conveniences are only for this machine.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h == "localhost" { return true }
        return ["127.0.0.0/8", "::1/128"].compactMap(CIDR.init).contains { $0.contains(h) }
    }

    private static func loadMail(value: (String) -> String?, production: Bool, frontend: String?, localBase: String,
                                 problems: inout [String]) -> MailSettings {
        let choice = value("EMAIL_TRANSPORT")?.lowercased()
        let providerName = value("EMAIL_PROVIDER")?.lowercased()
        // EMAIL_PROVIDER picks the provider's HTTPS API; its SMTP relay only with EMAIL_TRANSPORT=smtp.
        var env: [String: String] = [:]
        for key in ["SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_CA_FILE", "SMTP_HELO_NAME",
                    "EMAIL_SERVICE_API_KEY", "EMAIL_FROM"] {
            env[key] = value(key)
        }
        if choice == "smtp" { env["EMAIL_PROVIDER"] = value("EMAIL_PROVIDER") }
        var smtp: SMTPConfiguration?
        do { smtp = try SMTPConfiguration.fromEnvironment(env) } catch { problems.append("\(error)") }
        let from = smtp?.from ?? value("EMAIL_FROM").flatMap(MailAddress.init(parsing:)) ?? MailAddress("no-reply@localhost.localdomain", name: "Live Streams")
        if value("EMAIL_FROM") != nil, value("EMAIL_FROM").flatMap(MailAddress.init(parsing:)) == nil {
            problems.append("EMAIL_FROM must be an address or 'Name <address>'")
        }

        func api(_ provider: EmailProvider) -> MailSettings.Transport {
            guard let key = value("EMAIL_SERVICE_API_KEY") else {
                problems.append("EMAIL_SERVICE_API_KEY is required to send through \(provider.rawValue)'s API")
                return .disabled
            }
            var settings = EmailAPISettings(provider: provider, apiKey: key, baseURL: provider.defaultBaseURL,
                                            requestsPerSecond: provider.defaultRequestsPerSecond)
            settings.maxConcurrentRequests = provider.defaultConcurrency
            if let base = value("EMAIL_API_BASE_URL") {
                guard let url = URL(string: base), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
                    problems.append("EMAIL_API_BASE_URL must be an http(s) URL")
                    return .disabled
                }
                if production, url.scheme?.lowercased() != "https", !isLoopback(url.host ?? "") {
                    problems.append("EMAIL_API_BASE_URL must be https in production (plain http only to a loopback address)")
                }
                settings.baseURL = base.hasSuffix("/") ? String(base.dropLast()) : base
            }
            if let raw = value("EMAIL_API_RATE_LIMIT") {
                if let n = Double(raw), n > 0, n <= 10_000 { settings.requestsPerSecond = n } else {
                    problems.append("EMAIL_API_RATE_LIMIT must be requests per second in (0, 10000]")
                }
            }
            if let raw = value("EMAIL_API_TIMEOUT_SECONDS") {
                if let n = Double(raw), n >= 1, n <= 120 { settings.timeoutSeconds = n } else { problems.append("EMAIL_API_TIMEOUT_SECONDS must be 1–120") }
            }
            if let raw = value("EMAIL_API_CONCURRENCY") {
                if let n = Int(raw), (1...64).contains(n) { settings.maxConcurrentRequests = n } else { problems.append("EMAIL_API_CONCURRENCY must be 1–64") }
            }
            if let stream = value("POSTMARK_MESSAGE_STREAM") { settings.messageStream = stream }
            return .api(settings)
        }

        let transport: MailSettings.Transport
        switch choice {
        case "outbox":
            transport = .outbox
        case "smtp":
            if let smtp { transport = .smtp(smtp) } else {
                problems.append("EMAIL_TRANSPORT=smtp needs SMTP_HOST or EMAIL_PROVIDER")
                transport = .disabled
            }
        case let name? where EmailProvider(rawValue: name) != nil:
            transport = api(EmailProvider(rawValue: name)!)
        case "api":
            if let providerName, let provider = EmailProvider(rawValue: providerName) { transport = api(provider) } else {
                problems.append("EMAIL_TRANSPORT=api needs EMAIL_PROVIDER=resend|postmark|sendgrid")
                transport = .disabled
            }
        case nil:
            if let providerName {
                if let provider = EmailProvider(rawValue: providerName) { transport = api(provider) } else {
                    problems.append("EMAIL_PROVIDER must be resend, postmark or sendgrid")
                    transport = .disabled
                }
            } else {
                transport = smtp.map { .smtp($0) } ?? (production ? .disabled : .outbox)
            }
        default:
            problems.append("EMAIL_TRANSPORT must be smtp, resend, postmark, sendgrid, api or outbox")
            transport = .disabled
        }
        let publicBase = (value("PUBLIC_BASE_URL") ?? value("BACKEND_URL")).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        if production, transport.sends {
            if value("EMAIL_FROM") == nil { problems.append("EMAIL_FROM is required when sending mail in production") }
            // Every email carries a one-click unsubscribe link to this API.
            if publicBase == nil { problems.append("PUBLIC_BASE_URL (or BACKEND_URL) is required when sending mail in production") }
        }
        var retryBase: TimeInterval = 30
        if let raw = value("EMAIL_RETRY_BASE_SECONDS") {
            if let n = Double(raw), n > 0, n <= 3600 { retryBase = n } else { problems.append("EMAIL_RETRY_BASE_SECONDS must be a number of seconds (0–3600]") }
        }
        var connections = 8
        if let raw = value("SMTP_MAX_CONNECTIONS") {
            if let n = Int(raw), (1...64).contains(n) { connections = n } else { problems.append("SMTP_MAX_CONNECTIONS must be 1–64") }
        }
        return MailSettings(transport: transport, from: from, frontendURL: frontend ?? developmentFrontend,
                            publicBaseURL: publicBase ?? localBase,
                            retryBaseSeconds: retryBase, maxAttempts: 8, smtpConnections: connections)
    }

    static func isHex32(_ s: String) -> Bool {
        s.utf8.count == 32 && s.allSatisfy(\.isHexDigit)
    }
}
