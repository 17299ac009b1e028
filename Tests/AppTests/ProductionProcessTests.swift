import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

/// The production binary as operators run it: JSON logs without secrets, and a clean answer
/// while PostgreSQL restarts.
@Suite(.enabled(if: AppProcess.available && MailPeers.available, "needs APP_BINARY and the SMTP peers (scripts/test)"))
struct ProductionProcessTests {
    static let secrets: [String: String] = [
        "ADMIN_API_KEY": "admin-key-never-logged-5f0c2b9e",
        "CRON_SECRET": "cron-secret-never-logged-77aa1e",
        "AGORA_NCS_SECRET": "ncs-secret-never-logged-3c9d",
        "AGORA_CUSTOMER_SECRET": "customer-secret-never-logged-8e1f",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-never-logged-0b7d55",
    ]

    @Test func logsAreJSONLinesWithRequestIDsAndNoSecrets() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("logs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("app.log")
        let port = AppProcess.freePort()
        var env = try AppProcess.environment(database: .sqliteFile(dir.appendingPathComponent("app.sqlite").path), extra: Self.secrets.merging([
            "LOG_LEVEL": "trace", "AGORA_CUSTOMER_ID": "customer-id", "AGORA_API_BASE_URL": "http://127.0.0.1:9",
            "AWS_BUCKET_NAME": "logs-bucket", "AWS_ACCESS_KEY_ID": "AKIDLOGTEST", "S3_ENDPOINT": "http://127.0.0.1:9",
        ]) { $1 })
        env["SQLITE_PATH"] = dir.appendingPathComponent("app.sqlite").path
        let server = try AppProcess.serve(port: port, environment: env, output: log)
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        #expect(await AppProcess.waitForHealth(port: port), "server did not start")

        let admin = Self.secrets["ADMIN_API_KEY"]!
        let run = UUID().uuidString.prefix(8).lowercased()
        let users: [[String: Any]] = [
            ["id": "creator", "name": "Coach", "email": "coach-\(run)@example.com", "role": "creator", "timezone": "Europe/Berlin"],
            ["id": "m1", "name": "Member", "email": "member-\(run)@example.com", "timezone": "Asia/Tokyo"],
        ]
        let imported = await AppProcess.request("POST", port: port, "api/admin/import", bearer: admin,
                                                json: ["users": users, "follows": [["followerId": "m1", "followedId": "creator"]]])
        #expect(imported?.status == 200)
        let keys = await JWTVerifier.make(.init(secret: TestCredentials.jwtSecret, issuer: nil, audience: nil), clock: .system)
        let creatorJWT = try await keys.sign(userID: "creator", expiresIn: 3600)
        let memberJWT = try await keys.sign(userID: "m1", expiresIn: 3600)
        let created = await AppProcess.request("POST", port: port, "api/creator/streams/create", bearer: creatorJWT,
                                               json: ["creatorId": "creator", "title": "Logs", "isScheduled": false])
        #expect(created?.status == 201)
        let stream = ((try? JSONSerialization.jsonObject(with: Data((created?.body ?? "").utf8))) as? [String: Any])
            .flatMap { $0["stream"] as? [String: Any] }?["id"] as? String ?? "none"
        let token = await AppProcess.request("GET", port: port, "api/streams/\(stream)/token", bearer: memberJWT, headers: ["X-Request-ID": "trace-me-1"])
        #expect(token?.status == 200)
        let agoraToken = ((try? JSONSerialization.jsonObject(with: Data((token?.body ?? "").utf8))) as? [String: Any])?["token"] as? String ?? "none"
        let upload = await AppProcess.request("POST", port: port, "api/creator/streams/\(stream)/recording/upload-url", bearer: creatorJWT,
                                              json: ["contentType": "video/mp4"])
        #expect(upload?.status == 200)
        let uploadURL = ((try? JSONSerialization.jsonObject(with: Data((upload?.body ?? "").utf8))) as? [String: Any])?["uploadUrl"] as? String ?? ""
        let signature = URLComponents(string: uploadURL)?.queryItems?.first { $0.name == "X-Amz-Signature" }?.value ?? "none"
        // Wrong secrets and right ones on every guarded entry point.
        for bearer in [admin, "wrong-admin-key-0000000000", Self.secrets["CRON_SECRET"]!, memberJWT] {
            _ = await AppProcess.request("POST", port: port, "api/admin/import", bearer: bearer, json: ["users": []])
            _ = await AppProcess.request("GET", port: port, "api/cron/check-stream-reminders", bearer: bearer)
            _ = await AppProcess.request("GET", port: port, "api/streams/\(stream)/token", bearer: bearer)
        }
        // A confused client: the JWT in the query string and the cron secret in a custom header
        // (Vapor's trace log prints request heads; query values and unknown headers are redacted).
        _ = await AppProcess.request("GET", port: port, "api/streams/\(stream)/token?access_token=\(creatorJWT)",
                                     headers: ["X-Cron-Secret": Self.secrets["CRON_SECRET"]!, "X-Admin-Key": admin])
        _ = await AppProcess.request("GET", port: port, "api/cron/check-stream-reminders?secret=\(Self.secrets["CRON_SECRET"]!)")
        _ = await AppProcess.request("POST", port: port, "api/webhooks/agora", headers: ["Agora-Signature-V2": Self.secrets["AGORA_NCS_SECRET"]!],
                                     json: ["noticeId": "n", "productId": 1, "eventType": 101])
        // The live-now email goes through the sink, which needs the SMTP password.
        let sent = try await DeliveryResilienceTests.waitUntil(timeout: 60) {
            !MailPeers.sinkMessages(containing: "member-\(run)@").isEmpty
        }
        #expect(sent, "the live-now email never reached the sink")
        server.terminate()
        #expect(await AppProcess.exited(server, timeout: 60))

        let text = try String(contentsOf: log, encoding: .utf8)
        var forbidden = Self.secrets
        forbidden["JWT_SECRET"] = TestCredentials.jwtSecret
        forbidden["AGORA_APP_CERTIFICATE"] = TestCredentials.agoraCert
        forbidden["SMTP_PASSWORD"] = MailPeers.env["SMTP_SINK_PASSWORD"]!
        forbidden["creator bearer token"] = creatorJWT
        forbidden["member bearer token"] = memberJWT
        forbidden["Agora token"] = agoraToken
        forbidden["S3 signature"] = signature
        forbidden["member email"] = "member-\(run)@example.com"
        for (name, value) in forbidden {
            #expect(!text.contains(value), "\(name) appears in the log")
        }
        // JSON lines, each with a level and a message; request lines carry route, status and the request id.
        let lines = text.split(separator: "\n").filter { !$0.isEmpty }
        #expect(lines.count > 10)
        var requestLines = 0
        for line in lines {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                Issue.record("not a JSON line: \(line.prefix(200))")
                continue
            }
            #expect(object["level"] != nil && object["message"] != nil && object["time"] != nil)
            if object["message"] as? String == "request" {
                requestLines += 1
                #expect(object["route"] != nil && object["status"] != nil && object["request-id"] != nil)
            }
        }
        #expect(requestLines >= 15)
        #expect(text.contains(#""request-id":"trace-me-1""#))
    }
}
