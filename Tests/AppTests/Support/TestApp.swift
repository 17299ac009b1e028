import FluentPostgresDriver
import Mailer
import Foundation
import NIOCore
import Testing
import VaporTesting
@testable import App

/// Test fixtures: the published Agora vector credentials, so issued tokens can be verified.
enum TestCredentials {
    static let jwtSecret = "test-jwt-secret-that-is-long-enough-0123456789"
    static let adminKey = "test-admin-key-0123456789"
    static let agoraAppId = "970CA35de60c44645bbae8a215061b33"
    static let agoraCert = "5CFd2fd1755d40ecb72977518be15d3b"
    static let frontend = "https://fit.example.com"
}

/// A configured, migrated application on a fresh database: in-memory SQLite by default, or a
/// throwaway PostgreSQL database when TEST_DATABASE_URL is set (scripts/test runs both).
struct TestApp {
    let app: Application
    let setNow: @Sendable (Date) -> Void
    let start: Date

    static var postgresURL: String? { ProcessInfo.processInfo.environment["TEST_DATABASE_URL"] }
    static let defaultStart = Date(timeIntervalSince1970: 1_772_900_000) // 2026-03-07T16:13:20Z

    static func run(
        start: Date = defaultStart,
        randomUID: (@Sendable () -> UInt32)? = nil,
        streamEvents: (any StreamEvents)? = nil,
        mailTransport: (any MailTransport)? = nil,
        streamRecordings: (any StreamRecordings)? = nil,
        realClock: Bool = false,
        fileDatabase: Bool = false,
        adjust: (inout AppConfig) -> Void = { _ in },
        _ body: (TestApp) async throws -> Void
    ) async throws {
        let (manual, setNow) = AppClock.manual(start)
        let clock = realClock ? AppClock.system : manual
        var overrides = Overrides(clock: clock, streamEvents: streamEvents, mailTransport: mailTransport)
        if let randomUID { overrides.randomUID = randomUID }
        overrides.streamRecordings = streamRecordings
        let scratch = try await ScratchDatabase.make(file: fileDatabase)
        var config = AppConfig(
            database: scratch.choice,
            jwt: .init(secret: TestCredentials.jwtSecret, issuer: nil, audience: nil),
            adminAPIKey: TestCredentials.adminKey,
            // Early join a day ahead: the suites written before issue 18 ask for member tokens an hour before
            // the start; StageTests checks the real window.
            agora: .init(appId: TestCredentials.agoraAppId, appCertificate: TestCredentials.agoraCert, tokenTTLSeconds: 3600,
                         earlyJoinSeconds: 86_400),
            frontendURL: TestCredentials.frontend,
            corsAllowedOrigins: ["https://admin.example.com"],
            isDevelopment: false,
            mail: .init(transport: .outbox, from: MailAddress("live@fit.example.com", name: "Fit Live"), frontendURL: TestCredentials.frontend,
                        publicBaseURL: "https://api.fit.example.com", retryBaseSeconds: 0.05, maxAttempts: 8, smtpConnections: 4),
            worker: .init(runInServe: false, maxInFlight: 64, leaseSeconds: 60)
        )
        adjust(&config)
        let app = try await Application.make(.testing)
        app.logger.logLevel = .warning
        do {
            try await configure(app, config: config, overrides: overrides)
            try await MigrateWithLock.run(app)
            try await body(TestApp(app: app, setNow: setNow, start: start))
        } catch {
            try? await app.asyncShutdown()
            try? await scratch.drop()
            throw error
        }
        try await app.asyncShutdown()
        try await scratch.drop()
    }

    // MARK: Requests

    struct Reply {
        let status: HTTPStatus
        let headers: HTTPHeaders
        let raw: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(raw.utf8))) as? [String: Any] ?? [:] }
        var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    }

    @discardableResult
    func send(_ method: HTTPMethod, _ path: String, bearer: String? = nil, json: Any? = nil, raw: String? = nil,
              headers extra: HTTPHeaders = [:]) async throws -> Reply {
        var headers = extra
        if let bearer { headers.bearerAuthorization = .init(token: bearer) }
        var body: ByteBuffer?
        if let json {
            body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: json))
            headers.contentType = .json
        } else if let raw {
            body = ByteBuffer(string: raw)
            if headers.contentType == nil { headers.contentType = .json }
        }
        let res = try await app.testing().sendRequest(method, path, headers: headers, body: body)
        return Reply(status: res.status, headers: res.headers, raw: res.body.string)
    }

    func token(_ userID: String, expiresIn: TimeInterval = 3600) async throws -> String {
        try await app.deps.jwt.sign(userID: userID, expiresIn: expiresIn)
    }

    var admin: String { TestCredentials.adminKey }

    /// Imports users through the admin API (the path the host platform uses).
    @discardableResult
    func importUsers(_ users: [[String: Any]], follows: [[String: Any]] = [], subscriptions: [[String: Any]] = []) async throws -> Reply {
        let r = try await send(.POST, "api/admin/import", bearer: admin, json: ["users": users, "follows": follows, "subscriptions": subscriptions])
        #expect(r.status == .ok, "import failed: \(r.raw)")
        return r
    }

    static func user(_ id: String, role: String = "member", timezone: Any = NSNull(), active: Bool = true) -> [String: Any] {
        ["id": id, "name": "Name \(id)", "email": "\(id)@example.com", "timezone": timezone, "role": role, "isActive": active]
    }

    /// A creator and two members; returns nothing, ids are "creator", "creator2", "m1", "m2".
    func seedBasics() async throws {
        try await importUsers([
            Self.user("creator", role: "creator", timezone: "America/New_York"),
            Self.user("creator2", role: "creator"),
            Self.user("m1", timezone: "Europe/London"),
            Self.user("m2", timezone: "Asia/Kolkata"),
        ])
    }

    /// Creates a stream as `creator` and returns its id.
    func createStream(_ creator: String = "creator", scheduled: Bool = true, start: Date? = nil, title: String = "Morning HIIT") async throws -> String {
        let startTime = ISO8601.string(start ?? self.start.addingTimeInterval(3600))
        let r = try await send(.POST, "api/creator/streams/create", bearer: try await token(creator),
                               json: ["creatorId": creator, "title": title, "isScheduled": scheduled, "startTime": startTime])
        #expect(r.status == .created, "create failed: \(r.raw)")
        return (r.json["stream"] as? [String: Any])?["id"] as? String ?? ""
    }
}

/// One fresh database per test, so suites run in parallel on PostgreSQL as on SQLite.
struct ScratchDatabase {
    let choice: AppConfig.DatabaseChoice
    let drop: @Sendable () async throws -> Void

    /// `file`: a SQLite file (not memory) so another process can open it too.
    static func make(file: Bool = false) async throws -> ScratchDatabase {
        guard let base = TestApp.postgresURL else {
            guard file else { return ScratchDatabase(choice: .sqliteMemory, drop: {}) }
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("scratch-\(UUID().uuidString).sqlite").path
            return ScratchDatabase(choice: .sqliteFile(path)) {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
        }
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await admin(base, "CREATE DATABASE \(name)")
        var components = URLComponents(string: base)!
        components.path = "/" + name
        return ScratchDatabase(choice: .postgres(url: components.string!)) {
            try await admin(base, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        }
    }

    private static func admin(_ url: String, _ sql: String) async throws {
        let config = try SQLPostgresConfiguration(url: url)
        let logger = Logger(label: "test-db")
        let conn = try await PostgresConnection.connect(configuration: config.coreConfiguration, id: 1, logger: logger)
        do { _ = try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger) } catch { try? await conn.close(); throw error }
        try await conn.close()
    }
}
