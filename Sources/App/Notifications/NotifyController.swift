import Fluent
import SQLKit
import Vapor

struct NotifyController: RouteCollection {
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
    @Sendable func notify(req: Request) async throws -> NotifyResponse {
        let stream = try await StreamController.findOwnedStream(req)
        let body = try req.content.decode(NotifyRequest.self)
        if let id = body.streamId, id != stream.id { throw APIError.validation("streamId in the body does not match the URL") }
        guard let kind = NotificationKind(rawValue: body.type), [.liveNow, .scheduled, .reminder].contains(kind) else {
            throw APIError.validation("type must be live_now, scheduled or reminder")
        }
        try StreamController.requireNotCancelled(stream)
        guard !stream.hasEnded else { throw APIError(.conflict, "stream_ended", "This stream has ended") }
        guard stream.isEligible(for: kind) else {
            throw kind == .liveNow
                ? APIError(.conflict, "stream_not_live", "live_now needs the stream to be live")
                : APIError(.conflict, "stream_already_live", "\(kind.rawValue) emails are for streams that have not started")
        }
        let revision = kind == .liveNow ? 0 : stream.scheduleRevision
        let payload = FanOut.Payload(streamId: stream.id!, kind: kind, revision: revision)
        let queue = req.deps.jobs
        let count = try await req.db.transaction { tx -> Int in
            guard try await FanOut.enqueue(payload, again: true, queue: queue, on: tx) else { return 0 }
            return try await Recipients.countNotYetQueued(creator: stream.$creator.id, stream: stream.id!, kind: kind, revision: revision, on: tx as! any SQLDatabase)
        }
        return NotifyResponse(emailsSent: count)
    }

    struct CountsResponse: Content {
        var success = true
        let streamId: String
        /// kind → status → count, every kind and status present.
        let notifications: [String: [String: Int]]
    }

    /// GET /api/creator/streams/:streamId/notifications
    @Sendable func notifications(req: Request) async throws -> CountsResponse {
        let stream = try await StreamController.findOwnedStream(req)
        struct Row: Decodable { let kind: String; let status: String; let n: Int }
        let rows = try await (req.db as! any SQLDatabase).raw("""
            SELECT kind, status, COUNT(*) AS n FROM deliveries WHERE stream_id = \(bind: stream.id!) GROUP BY kind, status
            """).all(decoding: Row.self)
        var result: [String: [String: Int]] = [:]
        for kind in NotificationKind.allCases {
            result[kind.rawValue] = Dictionary(uniqueKeysWithValues: Delivery.Status.all.map { ($0, 0) })
        }
        for r in rows { result[r.kind, default: [:]][r.status] = r.n }
        return CountsResponse(streamId: stream.id!, notifications: result)
    }
}
