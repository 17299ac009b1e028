import Fluent
import SQLKit
import Vapor

/// A creator's manual notices and the delivery counts of a stream.
struct NotifyController: RouteCollection {
    let lifecycle: StreamLifecycle
    let jobs: JobQueue

    func boot(routes: any RoutesBuilder) throws {
        routes.grouped(RateLimitMiddleware.notify).post("creator", "streams", ":streamId", "notify", use: notify)
        routes.get("creator", "streams", ":streamId", "notifications", use: notifications)
    }

    struct NotifyRequest: Content {
        let streamId: String?
        let type: String
    }

    struct NotifyResponse: Content {
        var success = true
        let emailsSent: Int
    }

    /// POST /api/creator/streams/:streamId/notify {type} — queues the fan-out and returns at once.
    /// emailsSent counts eligible members not yet queued for this kind (0 on a repeat call).
    /// `reminder` queues a manual reminder: its own kind of send, so the automatic one still goes out.
    @Sendable func notify(req: Request) async throws -> NotifyResponse {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        let body = try req.json(NotifyRequest.self)
        if let id = body.streamId, id != stream.id { throw APIError.validation("streamId in the body does not match the URL") }
        let kind: NotificationKind
        switch body.type {
        case "live_now": kind = .liveNow
        case "scheduled": kind = .scheduled
        case "reminder": kind = .manualReminder
        default: throw APIError.validation("type must be live_now, scheduled or reminder")
        }
        switch stream.state {
        case .cancelled: throw StreamLifecycle.cancelledError
        case .ended: throw StreamLifecycle.endedError
        case let state where !state.wants(kind):
            throw kind == .liveNow
                ? APIError(.conflict, "stream_not_live", "live_now needs the stream to be live")
                : APIError(.conflict, "stream_already_live", "\(body.type) emails are for streams that have not started")
        default: break
        }
        let revision = kind == .liveNow ? 0 : stream.scheduleRevision
        let payload = FanOut.Payload(streamId: stream.id!, kind: kind, revision: revision)
        let count = try await req.db.writeTransaction { tx -> Int in
            guard try await FanOut.enqueue(payload, again: true, queue: jobs, on: tx) else { return 0 }
            return try await Audience.countNotYetQueued(creator: stream.$creator.id, stream: stream.id!, kind: kind, revision: revision, on: tx.sql)
        }
        return NotifyResponse(emailsSent: count)
    }

    struct CountsResponse: Content {
        var success = true
        let streamId: String
        /// kind → status → count, every kind and status present (email).
        let notifications: [String: [String: Int]]
        /// The push channel: kind → status → count (queued, sending, sent, failed, skipped).
        let push: [String: [String: Int]]
    }

    /// What the providers reported after sending (delivery events), counted beside the statuses.
    static let eventCounts = ["delivered", "bounced", "complained"]

    /// GET /api/creator/streams/:streamId/notifications
    @Sendable func notifications(req: Request) async throws -> CountsResponse {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        struct Row: Decodable { let kind: String; let status: String; let n: Int; let delivered: Int; let bounced: Int; let complained: Int }
        let rows = try await req.db.sql.raw("""
            SELECT kind, status, COUNT(*) AS n, COUNT(delivered_at) AS delivered, COUNT(bounced_at) AS bounced, COUNT(complained_at) AS complained
            FROM deliveries WHERE stream_id = \(bind: stream.id!) GROUP BY kind, status
            """).all(decoding: Row.self)
        var result: [String: [String: Int]] = [:]
        for kind in NotificationKind.allCases {
            result[kind.rawValue] = Dictionary(uniqueKeysWithValues: (DeliveryStatus.allCases.map(\.rawValue) + Self.eventCounts).map { ($0, 0) })
        }
        for r in rows {
            result[r.kind, default: [:]][r.status] = r.n
            result[r.kind, default: [:]]["delivered", default: 0] += r.delivered
            result[r.kind, default: [:]]["bounced", default: 0] += r.bounced
            result[r.kind, default: [:]]["complained", default: 0] += r.complained
        }
        struct PushRow: Decodable { let kind: String; let status: String; let n: Int }
        let pushRows = try await req.db.sql.raw("""
            SELECT kind, status, COUNT(*) AS n FROM push_deliveries WHERE stream_id = \(bind: stream.id!) GROUP BY kind, status
            """).all(decoding: PushRow.self)
        var push: [String: [String: Int]] = [:]
        for kind in NotificationKind.allCases {
            push[kind.rawValue] = Dictionary(uniqueKeysWithValues: PushDelivery.Status.allCases.map { ($0.rawValue, 0) })
        }
        for r in pushRows { push[r.kind, default: [:]][r.status] = r.n }
        return CountsResponse(streamId: stream.id!, notifications: result, push: push)
    }
}
