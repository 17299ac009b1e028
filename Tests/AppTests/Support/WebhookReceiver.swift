import Foundation
import NIOConcurrencyHelpers
import Vapor
@testable import App

/// A test receiver for the host-platform webhooks: a real HTTP server on 127.0.0.1 that records
/// every request and answers what `respond` says for it (`attempt` counts requests with that
/// webhook-id, from 1).
final class WebhookReceiver: Sendable {
    struct Captured: Sendable {
        let headers: [String: String]
        let body: String
        let attempt: Int
        let status: UInt
        var id: String { headers["webhook-id"] ?? "" }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        var sequence: Int? { (json["data"] as? [String: Any])?["sequence"] as? Int }
    }

    let app: Application
    let port: Int
    private let log = NIOLockedValueBox<[Captured]>([])

    var url: String { "http://127.0.0.1:\(port)/hook" }
    var requests: [Captured] { log.withLockedValue { $0 } }
    var delivered: [Captured] { requests.filter { (200..<300).contains($0.status) } }

    private init(app: Application, port: Int) { self.app = app; self.port = port }

    static func start(delayMilliseconds: Int = 0,
                      _ respond: @escaping @Sendable (_ body: [String: Any], _ attempt: Int) -> HTTPStatus = { _, _ in .noContent }) async throws -> WebhookReceiver {
        let app = try await Application.make(.testing)
        app.logger.logLevel = .critical
        let box = NIOLockedValueBox<WebhookReceiver?>(nil)
        app.post("hook") { req async -> Response in
            let body = req.body.string ?? ""
            var headers: [String: String] = [:]
            for (name, value) in req.headers { headers[name.lowercased()] = value }
            let receiver = box.withLockedValue { $0 }!
            let id = headers["webhook-id"] ?? ""
            let attempt = receiver.log.withLockedValue { log in log.filter { $0.id == id }.count } + 1
            let json = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
            if delayMilliseconds > 0 { try? await Task.sleep(for: .milliseconds(delayMilliseconds)) }
            let status = respond(json, attempt)
            receiver.log.withLockedValue { $0.append(Captured(headers: headers, body: body, attempt: attempt, status: status.code)) }
            return Response(status: status)
        }
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        guard let port = app.http.server.shared.localAddress?.port else { throw Abort(.internalServerError) }
        let receiver = WebhookReceiver(app: app, port: port)
        box.withLockedValue { $0 = receiver }
        return receiver
    }

    func stop() async throws {
        await app.server.shutdown()
        try await app.asyncShutdown()
    }
}

/// scripts/oracles/webhook_verify.py: PyPI standardwebhooks verifying what we sent.
enum WebhookOracle {
    static var available: Bool { PythonOracle.available }

    /// For each (secret, request): true, or the library's error.
    static func verify(_ checks: [(secret: String, headers: [String: String], body: String)]) async throws -> [Any] {
        let input = try JSONSerialization.data(withJSONObject: ["checks": checks.map { ["secret": $0.secret, "headers": $0.headers, "body": $0.body] }])
        return try JSONSerialization.jsonObject(with: try await PythonOracle.run("webhook_verify.py", input: input)) as? [Any] ?? []
    }
}
