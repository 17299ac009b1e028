import Fluent
import Foundation
import SQLKit
import Vapor

/// The host platform's webhook endpoints (admin API key): CRUD, secret rotation, the delivery log,
/// replay, and the event log to reconcile by polling.
struct WebhookAdminController: RouteCollection {
    let settings: WebhookSettings
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        let hooks = routes.grouped("webhooks")
        hooks.post(use: create)
        hooks.get(use: list)
        hooks.get(":webhookId", use: one)
        hooks.patch(":webhookId", use: update)
        hooks.delete(":webhookId", use: delete)
        hooks.post(":webhookId", "rotate-secret", use: rotate)
        hooks.get(":webhookId", "deliveries", use: deliveries)
        hooks.post(":webhookId", "replay", use: replay)
        routes.get("events", use: events)
    }

    // MARK: Shapes

    struct Row: Decodable {
        let id: String, url: String, events: String, description: String?, enabled: Bool, secret: String
        let previous_secret_until: Date?, consecutive_failures: Int, disabled_reason: String?, disabled_at: Date?
        let created_at: Date, updated_at: Date
    }

    struct Webhook: Content {
        let id: String
        let url: String
        /// Subscribed event types ([] = every event).
        let events: [String]
        @NullEncodable var description: String?
        let enabled: Bool
        let consecutiveFailures: Int
        @NullEncodable var disabledReason: String?
        @NullEncodable var disabledAt: Date?
        /// Until then the previous secret also signs (after a rotation).
        @NullEncodable var previousSecretExpiresAt: Date?
        let createdAt: Date
        let updatedAt: Date
        /// Only in the create and rotate-secret answers.
        var secret: String?

        init(_ r: Row, now: Date, showSecret: Bool = false) {
            id = r.id; url = r.url
            events = r.events.split(separator: ",").map(String.init)
            description = r.description; enabled = r.enabled; consecutiveFailures = r.consecutive_failures
            disabledReason = r.disabled_reason; disabledAt = r.disabled_at
            previousSecretExpiresAt = r.previous_secret_until.flatMap { $0 > now ? $0 : nil }
            createdAt = r.created_at; updatedAt = r.updated_at
            secret = showSecret ? r.secret : nil
        }
    }

    struct One: Content { var success = true; let webhook: Webhook }
    struct Many: Content { var success = true; let webhooks: [Webhook] }

    struct CreateBody: Content { let url: String; let events: [String]?; let description: String?; let enabled: Bool? }
    struct UpdateBody: Content { let url: String?; let events: [String]?; let description: String?; let enabled: Bool? }

    // MARK: Endpoints

    @Sendable func create(req: Request) async throws -> Response {
        let body = try req.json(CreateBody.self)
        let url = try validURL(body.url)
        let now = clock.now()
        let id = "wh_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await req.db.sql.insert(into: WebhookOutbox.endpoints)
            .columns("id", "url", "events", "description", "enabled", "secret", "consecutive_failures", "created_at", "updated_at")
            .values(SQLBind(id), SQLBind(url), SQLBind(try Self.filter(body.events)),
                    SQLBind(try Validation.text(body.description, field: "description", max: 500)), SQLBind(body.enabled ?? true),
                    SQLBind(WebhookSigner.newSecret()), SQLBind(0), SQLBind(now), SQLBind(now)).run()
        return try await One(webhook: Webhook(try await row(id, on: req.db), now: now, showSecret: true)).encodeResponse(status: .created, for: req)
    }

    @Sendable func list(req: Request) async throws -> Many {
        let rows = try await req.db.sql.raw("SELECT * FROM webhook_endpoints ORDER BY created_at, id LIMIT 500").all(decoding: Row.self)
        let now = clock.now()
        return Many(webhooks: rows.map { Webhook($0, now: now) })
    }

    @Sendable func one(req: Request) async throws -> One {
        One(webhook: Webhook(try await row(try id(req), on: req.db), now: clock.now()))
    }

    /// Enabling an endpoint again resets its failure count (the circuit breaker closes).
    @Sendable func update(req: Request) async throws -> One {
        let id = try id(req)
        _ = try await row(id, on: req.db)
        let body = try req.json(UpdateBody.self)
        let now = clock.now()
        var update = req.db.sql.update(WebhookOutbox.endpoints).set("updated_at", to: SQLBind(now))
        if let url = body.url { update = update.set("url", to: SQLBind(try validURL(url))) }
        if let events = body.events { update = update.set("events", to: SQLBind(try Self.filter(events))) }
        if let description = body.description {
            update = update.set("description", to: SQLBind(try Validation.text(description, field: "description", max: 500)))
        }
        if let enabled = body.enabled {
            update = update.set("enabled", to: SQLBind(enabled))
            if enabled {
                update = update.set("consecutive_failures", to: SQLBind(0)).set("disabled_reason", to: SQLLiteral.null)
                    .set("disabled_at", to: SQLLiteral.null)
            } else {
                update = update.set("disabled_reason", to: SQLBind("disabled by the admin API")).set("disabled_at", to: SQLBind(now))
            }
        }
        try await update.where("id", .equal, SQLBind(id)).run()
        return One(webhook: Webhook(try await row(id, on: req.db), now: now))
    }

    @Sendable func delete(req: Request) async throws -> RSVPController.Cancelled {
        struct Gone: Decodable { let id: String }
        let gone = try await req.db.sql.raw("DELETE FROM webhook_endpoints WHERE id = \(bind: try id(req)) RETURNING id").all(decoding: Gone.self)
        guard !gone.isEmpty else { throw Self.notFound }
        return .init(deleted: true)
    }

    /// A new secret; the old one keeps signing (second signature) for WEBHOOK_SECRET_OVERLAP_HOURS.
    @Sendable func rotate(req: Request) async throws -> One {
        let id = try id(req)
        let now = clock.now()
        struct Rotated: Decodable { let id: String }
        let rotated = try await req.db.sql.raw("""
            UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = \(bind: now.addingTimeInterval(settings.secretOverlap)),
              secret = \(bind: WebhookSigner.newSecret()), updated_at = \(bind: now)
            WHERE id = \(bind: id) RETURNING id
            """).all(decoding: Rotated.self)
        guard !rotated.isEmpty else { throw Self.notFound }
        return One(webhook: Webhook(try await row(id, on: req.db), now: now, showSecret: true))
    }

    struct Delivery: Content {
        let id: Int64
        /// The event's `webhook-id`.
        let messageId: String
        let type: String
        let status: WebhookDeliveryStatus
        let attempts: Int
        @NullEncodable var lastStatusCode: Int?
        @NullEncodable var lastError: String?
        @NullEncodable var nextAttemptAt: Date?
        @NullEncodable var deliveredAt: Date?
        let createdAt: Date
    }
    struct Deliveries: Content { var success = true; let deliveries: [Delivery]; @NullEncodable var nextCursor: String? }

    /// GET …/deliveries?status=&cursor=&limit= — newest first.
    @Sendable func deliveries(req: Request) async throws -> Deliveries {
        let id = try id(req)
        _ = try await row(id, on: req.db)
        let limit = try Self.limit(req)
        var filter: SQLQueryString = "d.endpoint_id = \(bind: id)"
        if let raw = req.query[String.self, at: "status"] {
            guard let status = WebhookDeliveryStatus(rawValue: raw) else { throw APIError.validation("status must be queued, sending, delivered or dead") }
            filter = filter + " AND d.status = \(bind: status.rawValue)"
        }
        if let raw = req.query[String.self, at: "cursor"] {
            guard let before = Int64(raw), before > 0 else { throw APIError.validation("Invalid cursor") }
            filter = filter + " AND d.id < \(bind: before)"
        }
        struct R: Decodable {
            let id: Int64, message_id: String, type: String, status: String, attempts: Int, last_status_code: Int?, last_error: String?
            let run_at: Date, delivered_at: Date?, created_at: Date
        }
        let rows = try await req.db.sql.raw("""
            SELECT d.id, e.message_id, e.type, d.status, d.attempts, d.last_status_code, d.last_error, d.run_at, d.delivered_at, d.created_at
            FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id WHERE \(filter) ORDER BY d.id DESC LIMIT \(literal: limit + 1)
            """).all(decoding: R.self)
        let shown = rows.prefix(limit).compactMap { r -> Delivery? in
            guard let status = WebhookDeliveryStatus(rawValue: r.status) else { return nil }
            return Delivery(id: r.id, messageId: r.message_id, type: r.type, status: status, attempts: r.attempts, lastStatusCode: r.last_status_code,
                            lastError: r.last_error, nextAttemptAt: status == .queued ? r.run_at : nil, deliveredAt: r.delivered_at, createdAt: r.created_at)
        }
        return Deliveries(deliveries: shown, nextCursor: rows.count > limit ? shown.last.map { String($0.id) } : nil)
    }

    struct ReplayBody: Content { let since: String }
    struct Replayed: Content { var success = true; let queued: Int }

    /// Sends again every event since `since` the endpoint subscribes to (same `webhook-id`s; a
    /// delivery being sent right now is left alone).
    @Sendable func replay(req: Request) async throws -> Replayed {
        let id = try id(req)
        _ = try await row(id, on: req.db)
        let body = try req.json(ReplayBody.self)
        guard let since = ISO8601.parse(body.since) else { throw APIError.validation("since must be an ISO 8601 date-time") }
        let now = clock.now()
        let queued = WebhookDeliveryStatus.queued.rawValue
        struct N: Decodable { let event_id: Int64 }
        let rows = try await req.db.sql.raw("""
            INSERT INTO webhook_deliveries (endpoint_id, event_id, order_key, status, attempts, run_at, created_at, updated_at)
            SELECT w.id, ev.id, ev.stream_id, \(bind: queued), 0, \(bind: now), \(bind: now), \(bind: now)
            FROM webhook_events ev JOIN webhook_endpoints w ON w.id = \(bind: id)
            WHERE ev.created_at >= \(bind: since) AND \(WebhookOutbox.subscribed(endpoint: "w", type: "ev.type"))
            ON CONFLICT (endpoint_id, event_id) DO UPDATE SET status = \(bind: queued), run_at = \(bind: now), attempts = 0,
              last_error = NULL, updated_at = \(bind: now)
            WHERE webhook_deliveries.status <> \(bind: WebhookDeliveryStatus.sending.rawValue)
            RETURNING event_id
            """).all(decoding: N.self)
        return Replayed(queued: rows.count)
    }

    /// GET /api/admin/events?since=&type=&cursor=&limit= — the outbox in order, the same bodies
    /// the endpoints get (to reconcile by polling). `cursor` is the last `cursor` seen.
    @Sendable func events(req: Request) async throws -> Response {
        let limit = try Self.limit(req)
        var filter: SQLQueryString = "1 = 1"
        if let raw = req.query[String.self, at: "since"] {
            guard let since = ISO8601.parse(raw) else { throw APIError.validation("since must be an ISO 8601 date-time") }
            filter = filter + " AND created_at >= \(bind: since)"
        }
        if let raw = req.query[String.self, at: "type"] {
            guard let type = WebhookEventType(rawValue: raw) else { throw APIError.validation("type must be one of \(WebhookEventType.allCases.map(\.rawValue).joined(separator: ", "))") }
            filter = filter + " AND type = \(bind: type.rawValue)"
        }
        if let raw = req.query[String.self, at: "cursor"] {
            guard let after = Int64(raw), after >= 0 else { throw APIError.validation("Invalid cursor") }
            filter = filter + " AND id > \(bind: after)"
        }
        struct R: Decodable { let id: Int64; let message_id: String; let type: String; let body: String; let created_at: Date }
        let rows = try await req.db.sql.raw("""
            SELECT id, message_id, type, body, created_at FROM webhook_events WHERE \(filter) ORDER BY id LIMIT \(literal: limit + 1)
            """).all(decoding: R.self)
        let shown = rows.prefix(limit)
        // The stored bodies are JSON already: embedded as they are, not re-encoded.
        func quoted(_ s: String) -> String { String(decoding: try! JSONEncoder().encode(s), as: UTF8.self) }
        let items = shown.map { r in
            "{\"body\":\(r.body),\"createdAt\":\(quoted(ISO8601.string(r.created_at))),\"cursor\":\(quoted(String(r.id))),\"id\":\(quoted(r.message_id)),\"type\":\(quoted(r.type))}"
        }
        let next = rows.count > limit ? shown.last.map { quoted(String($0.id)) } ?? "null" : "null"
        let json = "{\"events\":[\(items.joined(separator: ","))],\"nextCursor\":\(next),\"success\":true}"
        let response = Response(status: .ok, body: .init(string: json))
        response.headers.contentType = .json
        return response
    }

    // MARK: Helpers

    static let notFound = APIError.notFound("webhook_not_found", "Webhook endpoint not found")

    private func id(_ req: Request) throws -> String {
        let id = req.parameters.get("webhookId") ?? ""
        guard !id.isEmpty, id.utf8.count <= 64 else { throw Self.notFound }
        return id
    }

    private func row(_ id: String, on db: any Database) async throws -> Row {
        guard let row = try await db.sql.raw("SELECT * FROM webhook_endpoints WHERE id = \(bind: id)").first(decoding: Row.self) else { throw Self.notFound }
        return row
    }

    /// https (http too with WEBHOOK_ALLOW_PRIVATE_URLS); in production the host must resolve to public addresses only.
    private func validURL(_ raw: String) throws -> String {
        do {
            let url = try URLGuard.parse(raw, allowHTTP: settings.allowPrivateURLs)
            if !settings.allowPrivateURLs { try URLGuard.checkResolved(host: url.host ?? "") }
        } catch let refusal as URLGuard.Refusal {
            throw APIError.validation("url: \(refusal)")
        }
        return raw
    }

    static func filter(_ events: [String]?) throws -> String {
        guard let events else { return "" }
        guard events.count <= WebhookEventType.allCases.count * 2 else { throw APIError.validation("events lists too many types") }
        return WebhookOutbox.filter(try events.map { raw in
            guard let type = WebhookEventType(rawValue: raw) else {
                throw APIError.validation("events: \(raw.prefix(40)) is not one of \(WebhookEventType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return type
        })
    }

    static func limit(_ req: Request) throws -> Int {
        guard let raw = req.query[String.self, at: "limit"] else { return 100 }
        guard let n = Int(raw), (1...1000).contains(n) else { throw APIError.validation("limit must be an integer from 1 to 1000") }
        return n
    }
}
