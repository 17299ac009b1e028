import Crypto
import Foundation
import Vapor

/// Local stand-ins for the Resend, Postmark and SendGrid send APIs, written from their documented
/// contracts (providers.md): auth (401 missing / 403 wrong for Resend, 401 + ErrorCode 10 for
/// Postmark, 401 for SendGrid), batch limits (100 / 500 / 1,000 personalizations), no attachments
/// on Resend's batch, Postmark's per-message ErrorCode inside an HTTP 200, Resend's idempotency
/// keys (same key + same body → the first answer, nothing sent; same key + another body → 409),
/// a request rate limit with 429 + Retry-After + ratelimit-* headers, scripted failures and delays.
final class FakeEmailAPI: @unchecked Sendable {
    let app: Application
    private(set) var port = 0
    var baseURL: String { "http://127.0.0.1:\(port)" }
    let apiKey = "fake-email-api-key-0123456789"

    struct Email: Sendable {
        let provider: String
        let to: String
        let subject: String
        let text: String
        let html: String?
        let headers: [String: String]
        let hasAttachment: Bool
        let id: String
        let metadata: [String: String]
    }
    struct Call: Sendable { let path: String; let count: Int; let status: UInt; let idempotencyKey: String? }

    private let lock = NSLock()
    private var _emails: [Email] = []
    private var _calls: [Call] = []
    private var idempotent: [String: (bodyHash: String, status: HTTPResponseStatus, body: String)] = [:]
    private var windowStart = Date.distantPast
    private var windowCount = 0
    /// Requests per second before 429 (nil: unlimited).
    var rateLimit: Int? = nil
    /// Statuses the next calls answer with (after being counted), first first.
    var failNext: [UInt] = []
    /// Delay the next N calls by this much (they are still processed: a client that gave up sees nothing).
    var delayNext = 0
    var delay: Duration = .seconds(2)
    /// Added to every call (benchmarks and timing tests).
    var latency: Duration = .zero

    var emails: [Email] { lock.withLock { _emails } }
    var calls: [Call] { lock.withLock { _calls } }
    /// Requests being handled now (a delayed call is counted until it has been recorded).
    var inFlight: Int { lock.withLock { _inFlight } }
    private var _inFlight = 0
    func emails(to address: String) -> [Email] { emails.filter { $0.to == address } }

    init() async throws {
        app = try await Application.make(.testing)
        app.logger.logLevel = .critical
        app.routes.defaultMaxBodySize = "60mb"
        app.middleware.use(InFlight(fake: self))
        register()
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        port = app.http.server.shared.localAddress?.port ?? 0
    }

    func shutdown() async {
        await app.server.shutdown()
        try? await app.asyncShutdown()
    }

    private struct InFlight: AsyncMiddleware {
        let fake: FakeEmailAPI
        func respond(to request: Request, chainingTo next: any AsyncResponder) async throws -> Response {
            fake.lock.withLock { fake._inFlight += 1 }
            defer { fake.lock.withLock { fake._inFlight -= 1 } }
            return try await next.respond(to: request)
        }
    }

    private func json(_ status: HTTPResponseStatus, _ body: Any, headers: HTTPHeaders = [:]) -> Response {
        let r = Response(status: status, headers: headers, body: .init(data: try! JSONSerialization.data(withJSONObject: body)))
        r.headers.contentType = .json
        return r
    }

    private func record(_ path: String, _ count: Int, _ status: HTTPResponseStatus, key: String? = nil) {
        lock.withLock { _calls.append(Call(path: path, count: count, status: status.code, idempotencyKey: key)) }
    }

    /// Common gate: latency, scripted delay, rate limit, scripted failure. Returns a response to send instead.
    private func gate(_ req: Request, path: String) async -> Response? {
        if latency > .zero { try? await Task.sleep(for: latency) }
        let delayed = lock.withLock { () -> Bool in
            guard delayNext > 0 else { return false }
            delayNext -= 1
            return true
        }
        if delayed { try? await Task.sleep(for: delay) }
        let limited: Int? = lock.withLock {
            guard let limit = rateLimit else { return nil }
            let now = Date()
            if now.timeIntervalSince(windowStart) >= 1 { windowStart = now; windowCount = 0 }
            windowCount += 1
            return windowCount > limit ? limit : nil
        }
        if let limit = limited {
            record(path, 0, .tooManyRequests)
            return json(.tooManyRequests, ["statusCode": 429, "name": "rate_limit_exceeded", "message": "Too many requests"],
                        headers: ["retry-after": "1", "ratelimit-limit": "\(limit)", "ratelimit-remaining": "0", "ratelimit-reset": "1"])
        }
        let fail: UInt? = lock.withLock { failNext.isEmpty ? nil : failNext.removeFirst() }
        if let fail {
            record(path, 0, HTTPResponseStatus(statusCode: Int(fail)))
            return json(HTTPResponseStatus(statusCode: Int(fail)), ["statusCode": fail, "name": "scripted", "message": "scripted failure"])
        }
        return nil
    }

    private func body(_ req: Request) -> (Any, Data)? {
        guard req.headers.contentType?.subType == "json", let buffer = req.body.data else { return nil }
        let data = Data(buffer: buffer)
        return (try? JSONSerialization.jsonObject(with: data)).map { ($0, data) }
    }

    private static func validAddress(_ s: String) -> Bool {
        let parts = s.split(separator: "@")
        return parts.count == 2 && parts[1].contains(".") && !s.contains(" ") && !s.contains("<")
    }

    private func register() {
        // MARK: Resend
        let resend: @Sendable (Request, Bool) async -> Response = { [self] req, batch in
            let path = batch ? "/emails/batch" : "/emails"
            guard let bearer = req.headers.bearerAuthorization else {
                record(path, 0, .unauthorized)
                return json(.unauthorized, ["statusCode": 401, "name": "missing_api_key", "message": "Missing API key"])
            }
            guard bearer.token == apiKey else {
                record(path, 0, .forbidden)
                return json(.forbidden, ["statusCode": 403, "name": "invalid_api_key", "message": "API key is invalid"])
            }
            if let gated = await gate(req, path: path) { return gated }
            guard let (parsed, raw) = body(req) else { return json(.unprocessableEntity, ["statusCode": 422, "name": "validation_error", "message": "Invalid JSON"]) }
            let list: [[String: Any]]
            if batch {
                guard let array = parsed as? [[String: Any]], (1...100).contains(array.count) else {
                    record(path, 0, .unprocessableEntity)
                    return json(.unprocessableEntity, ["statusCode": 422, "name": "validation_error", "message": "Batch must hold 1 to 100 emails"])
                }
                if array.contains(where: { $0["attachments"] != nil }) {
                    record(path, array.count, .unprocessableEntity)
                    return json(.unprocessableEntity, ["statusCode": 422, "name": "validation_error", "message": "Attachments are not supported in batch"])
                }
                list = array
            } else {
                guard let one = parsed as? [String: Any] else { return json(.unprocessableEntity, ["statusCode": 422, "name": "validation_error", "message": "Expected an object"]) }
                list = [one]
            }
            for e in list {
                let to = e["to"] as? [String] ?? []
                guard e["from"] is String, (1...50).contains(to.count), to.allSatisfy(Self.validAddress), e["subject"] is String,
                      e["html"] is String || e["text"] is String else {
                    record(path, list.count, .unprocessableEntity)
                    return json(.unprocessableEntity, ["statusCode": 422, "name": "validation_error", "message": "Invalid email"])
                }
            }
            let key = req.headers.first(name: "Idempotency-Key")
            let bodyHash = SHA256.hash(data: raw).map { String(format: "%02x", $0) }.joined()
            if let key {
                let cached = lock.withLock { idempotent[key] }
                if let cached {
                    guard cached.bodyHash == bodyHash else {
                        record(path, list.count, .conflict, key: key)
                        return json(.conflict, ["statusCode": 409, "name": "invalid_idempotent_request", "message": "Same key, different payload"])
                    }
                    record(path, 0, cached.status, key: key)
                    let r = Response(status: cached.status, body: .init(string: cached.body))
                    r.headers.contentType = .json
                    return r
                }
            }
            var ids: [[String: String]] = []
            for e in list {
                let id = "re_" + UUID().uuidString.lowercased()
                ids.append(["id": id])
                let headers = (e["headers"] as? [String: String]) ?? [:]
                for to in e["to"] as? [String] ?? [] {
                    lock.withLock {
                        _emails.append(Email(provider: "resend", to: to, subject: e["subject"] as? String ?? "", text: e["text"] as? String ?? "",
                                             html: e["html"] as? String, headers: headers, hasAttachment: e["attachments"] != nil, id: id, metadata: [:]))
                    }
                }
            }
            let answer: Any = batch ? ["data": ids] : ids[0]
            let text = String(decoding: try! JSONSerialization.data(withJSONObject: answer), as: UTF8.self)
            if let key { lock.withLock { idempotent[key] = (bodyHash, .ok, text) } }
            record(path, list.count, .ok, key: key)
            let r = Response(status: .ok, body: .init(string: text))
            r.headers.contentType = .json
            return r
        }
        app.post("emails") { req async in await resend(req, false) }
        app.post("emails", "batch") { req async in await resend(req, true) }

        // MARK: Postmark
        app.post("email", "batch") { [self] req async -> Response in
            let path = "/email/batch"
            guard req.headers.first(name: "X-Postmark-Server-Token") == apiKey else {
                record(path, 0, .unauthorized)
                return json(.unauthorized, ["ErrorCode": 10, "Message": "The Server Token you provided in the X-Postmark-Server-Token request header was invalid."])
            }
            if let gated = await gate(req, path: path) { return gated }
            guard let (parsed, raw) = body(req), let list = parsed as? [[String: Any]] else {
                return json(.unprocessableEntity, ["ErrorCode": 402, "Message": "Received invalid JSON input."])
            }
            guard list.count <= 500, raw.count <= 50_000_000 else {
                record(path, list.count, .unprocessableEntity)
                return json(.unprocessableEntity, ["ErrorCode": 300, "Message": "Batch exceeds 500 messages or 50 MB"])
            }
            var results: [[String: Any]] = []
            for m in list {
                let to = m["To"] as? String ?? ""
                if !(m["From"] is String) || !Self.validAddress(to) || !(m["Subject"] is String) || m["MessageStream"] as? String == nil {
                    results.append(["ErrorCode": 300, "Message": "Invalid email request", "To": to])
                } else if to.hasPrefix("inactive") {
                    results.append(["ErrorCode": 406, "Message": "You tried to send to recipient(s) that have been marked as inactive.", "To": to])
                } else {
                    let id = UUID().uuidString.lowercased()
                    let headers = Dictionary(((m["Headers"] as? [[String: String]]) ?? []).compactMap { h in h["Name"].map { ($0, h["Value"] ?? "") } },
                                             uniquingKeysWith: { a, _ in a })
                    lock.withLock {
                        _emails.append(Email(provider: "postmark", to: to, subject: m["Subject"] as? String ?? "", text: m["TextBody"] as? String ?? "",
                                             html: m["HtmlBody"] as? String, headers: headers, hasAttachment: m["Attachments"] != nil, id: id,
                                             metadata: m["Metadata"] as? [String: String] ?? [:]))
                    }
                    results.append(["ErrorCode": 0, "Message": "OK", "MessageID": id, "To": to, "SubmittedAt": "2026-11-30T00:00:00Z"])
                }
            }
            record(path, list.count, .ok)
            return json(.ok, results)
        }

        // MARK: SendGrid
        app.post("v3", "mail", "send") { [self] req async -> Response in
            let path = "/v3/mail/send"
            guard req.headers.bearerAuthorization?.token == apiKey else {
                record(path, 0, .unauthorized)
                return json(.unauthorized, ["errors": [["message": "The provided authorization grant is invalid, expired, or revoked", "field": NSNull()]]])
            }
            if let gated = await gate(req, path: path) { return gated }
            guard let (parsed, _) = body(req), let mail = parsed as? [String: Any],
                  let personalizations = mail["personalizations"] as? [[String: Any]], (1...1000).contains(personalizations.count),
                  let from = (mail["from"] as? [String: Any])?["email"] as? String, Self.validAddress(from),
                  let content = mail["content"] as? [[String: Any]], !content.isEmpty, let subject = mail["subject"] as? String else {
                record(path, 0, .badRequest)
                return json(.badRequest, ["errors": [["message": "Bad Request", "field": NSNull()]]])
            }
            let id = String(UUID().uuidString.lowercased().prefix(22))
            for p in personalizations {
                for to in (p["to"] as? [[String: Any]] ?? []).compactMap({ $0["email"] as? String }) {
                    lock.withLock {
                        _emails.append(Email(provider: "sendgrid", to: to, subject: subject,
                                             text: content.first { $0["type"] as? String == "text/plain" }?["value"] as? String ?? "",
                                             html: content.first { $0["type"] as? String == "text/html" }?["value"] as? String,
                                             headers: mail["headers"] as? [String: String] ?? [:], hasAttachment: mail["attachments"] != nil, id: id,
                                             metadata: mail["custom_args"] as? [String: String] ?? [:]))
                    }
                }
            }
            record(path, personalizations.count, .accepted)
            return Response(status: .accepted, headers: ["X-Message-Id": id])
        }
    }
}
