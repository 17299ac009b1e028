import Fluent
import SQLKit
import Vapor

/// POST/DELETE /api/streams/:id/rsvp (any signed-in member, follower or not) and the creator's
/// GET /api/creator/streams/:id/rsvps.
struct RSVPController: RouteCollection {
    let lifecycle: StreamLifecycle
    let jobs: JobQueue
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        routes.post("streams", ":streamId", "rsvp", use: take)
        routes.delete("streams", ":streamId", "rsvp", use: cancel)
        routes.get("creator", "streams", ":streamId", "rsvps", use: list)
    }

    struct Answer: Content {
        struct Body: Content { let status: RSVP.Status; @NullEncodable var position: Int? }
        var success = true
        let rsvp: Body
    }

    private func open(_ req: Request) async throws -> LiveStream {
        try await lifecycle.notOver(req.parameters.get("streamId") ?? "", on: req.db)
    }

    @Sendable func take(req: Request) async throws -> Answer {
        let caller = try req.caller.id
        let stream = try await open(req)
        // The creator always has a place (nothing is stored).
        guard stream.$creator.id != caller else { return Answer(rsvp: .init(status: .confirmed, position: nil)) }
        guard let user = try await User.find(caller, on: req.db) else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        guard user.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        let moderation = try await req.deps.cache.moderation(.init(stream), on: req.db)
        if let refusal = moderation.refusal(user: caller, publisher: false, now: clock.now()) { throw refusal }
        let state = try await RSVP.take(stream: stream, user: caller, now: clock.now(), on: req.db)
        return Answer(rsvp: .init(status: state.status, position: state.position))
    }

    struct Cancelled: Content { var success = true; let deleted: Bool }

    /// Gives the place up; with a capacity the first in line is confirmed and told by email.
    @Sendable func cancel(req: Request) async throws -> Cancelled {
        let caller = try req.caller.id
        let stream = try await open(req)
        let (removed, promoted) = try await RSVP.cancel(stream: stream, user: caller, now: clock.now(), on: req.db)
        if let promoted {
            try await RSVP.notifyPromoted(promoted, stream: stream, now: clock.now(), on: req.db)
            req.deps.wake.wake()
        }
        return Cancelled(deleted: removed)
    }

    struct Entry: Content { let userId: String; let name: String; let status: RSVP.Status; let createdAt: Date }
    struct ListBody: Content { var success = true; let counts: RSVP.Counts; let rsvps: [Entry]; @NullEncodable var nextCursor: String? }

    /// Confirmed first, then the waitlist in order; paged by position (offset cursor).
    @Sendable func list(req: Request) async throws -> ListBody {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        var limit = 100
        if let raw = req.query[String.self, at: "limit"] {
            guard let n = Int(raw), (1...1000).contains(n) else { throw APIError.validation("limit must be an integer from 1 to 1000") }
            limit = n
        }
        var offset = 0
        if let raw = req.query[String.self, at: "cursor"] {
            guard let n = Int(raw), n >= 0, n <= 10_000_000 else { throw APIError.validation("Invalid cursor") }
            offset = n
        }
        struct Row: Decodable { let user_id: String; let name: String; let status: String; let created_at: Date }
        let rows = try await req.db.sql.raw("""
            SELECT r.user_id, u.name, r.status, r.created_at FROM rsvps r JOIN users u ON u.id = r.user_id
            WHERE r.stream_id = \(bind: stream.id!)
            ORDER BY CASE WHEN r.status = \(bind: RSVP.Status.confirmed.rawValue) THEN 0 ELSE 1 END, r.seq
            LIMIT \(literal: limit + 1) OFFSET \(literal: offset)
            """).all(decoding: Row.self)
        let counts = try await RSVP.counts(stream: stream.id!, capacity: stream.capacity, on: req.db.sql)
        let entries = rows.prefix(limit).compactMap { r in
            RSVP.Status(rawValue: r.status).map { Entry(userId: r.user_id, name: r.name, status: $0, createdAt: r.created_at) }
        }
        return ListBody(counts: counts, rsvps: entries, nextCursor: rows.count > limit ? String(offset + limit) : nil)
    }
}
