import Foundation
import Testing
import VaporTesting
@testable import App

@Suite struct PlatformTests {
    @Test func errorsUseTheJSONShape() async throws {
        try await TestApp.run { t in
            let unknown = try await t.send(.GET, "api/nothing-here")
            #expect(unknown.status == .notFound)
            #expect(unknown.json["success"] as? Bool == false)
            #expect(unknown.errorCode == "not_found")
            #expect((unknown.json["error"] as? [String: Any])?["message"] is String)
        }
    }

    @Test func corsAllowsTheFrontendOnly() async throws {
        try await TestApp.run { t in
            let preflight = try await t.send(.OPTIONS, "api/creator/streams/create", headers: [
                "Origin": TestCredentials.frontend, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type",
            ])
            #expect(preflight.status == .ok)
            #expect(preflight.headers.first(name: "Access-Control-Allow-Origin") == TestCredentials.frontend)
            #expect(preflight.headers.first(name: "Access-Control-Allow-Headers")?.lowercased().contains("authorization") == true)
            let extra = try await t.send(.GET, "health", headers: ["Origin": "https://admin.example.com"])
            #expect(extra.headers.first(name: "Access-Control-Allow-Origin") == "https://admin.example.com")
            let stranger = try await t.send(.GET, "health", headers: ["Origin": "https://evil.example.com"])
            #expect(stranger.headers.first(name: "Access-Control-Allow-Origin") != "https://evil.example.com")
            // Error responses carry CORS headers too, so browsers can read them.
            let denied = try await t.send(.GET, "api/creator/x/scheduled-streams", headers: ["Origin": TestCredentials.frontend])
            #expect(denied.status == .unauthorized)
            #expect(denied.headers.first(name: "Access-Control-Allow-Origin") == TestCredentials.frontend)
        }
    }

    @Test func productionRefusesToStartWithoutItsSecrets() throws {
        do {
            _ = try AppConfig.load(environment: .production, get: { _ in nil })
            Issue.record("expected a configuration error")
        } catch let error as AppConfig.Error {
            #expect(error.description.contains("JWT_SECRET"))
            #expect(error.description.contains("AGORA_APP_ID"))
            #expect(error.description.contains("AGORA_APP_CERTIFICATE"))
        }
        let good: [String: String] = ["JWT_SECRET": TestCredentials.jwtSecret, "AGORA_APP_ID": TestCredentials.agoraAppId,
                                      "AGORA_APP_CERTIFICATE": TestCredentials.agoraCert]
        let config = try AppConfig.load(environment: .production, get: { good[$0] })
        #expect(config.adminAPIKey == nil && config.agora.tokenTTLSeconds == 3600 && config.isDevelopment == false)
        #expect(throws: AppConfig.Error.self) {
            try AppConfig.load(environment: .production, get: { $0 == "JWT_SECRET" ? "short" : good[$0] })
        }
        #expect(throws: AppConfig.Error.self) {
            try AppConfig.load(environment: .production, get: { $0 == "AGORA_TOKEN_TTL_SECONDS" ? "90000" : good[$0] })
        }
        #expect(throws: AppConfig.Error.self) {
            try AppConfig.load(environment: .production, get: { $0 == "DATABASE_URL" ? "mysql://x" : good[$0] })
        }
    }

    @Test func developmentGeneratesSecretsOnceAndKeepsThem() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("devsecrets-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try AppConfig.load(environment: .development, dataDirectory: dir, get: { _ in nil })
        let second = try AppConfig.load(environment: .development, dataDirectory: dir, get: { _ in nil })
        #expect(first.jwt.secret == second.jwt.secret && first.jwt.secret.count >= 32)
        #expect(first.adminAPIKey == second.adminAPIKey)
        #expect(first.database == .sqliteFile("\(dir)/app.sqlite"))
        #expect(AppConfig.isHex32(first.agora.appId) && AppConfig.isHex32(first.agora.appCertificate))
    }

    @Test func timeZonesAreValidatedWithFoundation() {
        for good in ["America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC", "Europe/London"] {
            #expect(Validation.isValidTimeZone(good), "\(good)")
        }
        for bad in ["Mars/Olympus", "", "America/New York", String(repeating: "A", count: 100)] {
            #expect(!Validation.isValidTimeZone(bad), "\(bad)")
        }
    }

    @Test func serveDetection() {
        #expect(Entrypoint.isServe(["App"]))
        #expect(Entrypoint.isServe(["App", "serve", "--port", "9000"]))
        #expect(Entrypoint.isServe(["App", "--env", "production"]))
        #expect(!Entrypoint.isServe(["App", "migrate"]))
        #expect(!Entrypoint.isServe(["App", "dev-token", "x"]))
    }

    @Test func concurrentMigrationsAreSafe() async throws {
        try await TestApp.run { t in
            // Two more "replicas" start at once against an already-migrated database.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await MigrateWithLock.run(t.app) }
                group.addTask { try await MigrateWithLock.run(t.app) }
                try await group.waitForAll()
            }
            #expect(try await t.send(.GET, "health").status == .ok)
        }
    }
}

@Suite struct BodyLimitTests {
    /// Over a real socket: the in-memory tester does not stream bodies, so limits need the server.
    @Test func oneMegabyteByDefaultSixteenOnImport() async throws {
        try await TestApp.run { t in
            let tester = try t.app.testing(method: .running(port: 0))
            let padding = String(repeating: "x", count: 1_200_000)
            var headers = HTTPHeaders()
            headers.bearerAuthorization = .init(token: t.admin)
            headers.contentType = .json
            let big = try await tester.sendRequest(.PUT, "api/admin/users/u1", headers: headers,
                                                   body: ByteBuffer(string: #"{"name":"U","email":"u@example.com","pad":"\#(padding)"}"#))
            #expect(big.status == .payloadTooLarge)
            let error = try JSONSerialization.jsonObject(with: Data(big.body.readableBytesView)) as? [String: Any]
            #expect(error?["success"] as? Bool == false)
            #expect((error?["error"] as? [String: Any])?["code"] as? String == "payload_too_large")

            let users = (0..<6_000).map { TestApp.user("user-number-\($0)", timezone: "America/Argentina/Buenos_Aires") }
            let body = try JSONSerialization.data(withJSONObject: ["users": users])
            #expect(body.count > 1_000_000)
            let imported = try await tester.sendRequest(.POST, "api/admin/import", headers: headers, body: ByteBuffer(data: body))
            #expect(imported.status == .ok)
        }
    }
}
