import Fluent
import SQLKit
import Vapor

/// The creator's stream endpoints: thin adapters over `StreamLifecycle`.
struct StreamController: RouteCollection {
    let lifecycle: StreamLifecycle
    let recordings: Recordings
    let tokens: AgoraTokenIssuer

    func boot(routes: any RoutesBuilder) throws {
        let creator = routes.grouped("creator")
        creator.post("streams", "create", use: create)
        creator.post("streams", ":streamId", "stop", use: stop)
        creator.patch("streams", ":streamId", "status", use: updateStatus)
        creator.patch("streams", ":streamId", use: update)
        creator.post("streams", ":streamId", "cancel", use: cancel)
        creator.get(":creatorId", "scheduled-streams", use: scheduled)
    }

    private func owned(_ req: Request) async throws -> LiveStream {
        try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
    }

    /// POST /api/creator/streams/create
    @Sendable func create(req: Request) async throws -> Response {
        let caller = try req.caller
        let body = try req.json(CreateStreamRequest.self)
        guard body.creatorId == caller.id else { throw APIError.forbidden("creatorId must be the authenticated user") }
        let creator = try await lifecycle.activeCreator(caller.id, on: req.db)
        var draft = StreamDraft(
            title: try Validation.text(body.title, field: "title", min: 1, max: 200)!,
            details: try Validation.text(body.description, field: "description", max: 5000, lines: .multi),
            workoutType: try Validation.text(body.workoutType, field: "workoutType", max: 60),
            thumbnail: try Self.thumbnail(body.thumbnail) ?? nil,
            stagePolicy: try Self.stagePolicy(body.stagePolicy) ?? .hostOnly,
            capacity: try body.capacity.map { c in
                guard (1...100_000).contains(c) else { throw APIError.validation("capacity must be 1–100000") }
                return c
            })
        if body.isScheduled {
            guard let raw = body.startTime else { throw APIError.validation("startTime is required for a scheduled stream") }
            guard let start = ISO8601.parse(raw) else {
                throw APIError.validation("startTime must be ISO 8601 with Z or an offset, e.g. 2026-03-08T07:30:00Z")
            }
            draft.scheduledStart = start
        }
        let stream = try await lifecycle.create(draft, by: creator, on: req.db)
        let id = try stream.requireID()
        let token = try tokens.issue(channel: id, uid: creator.agoraUid32, role: .publisher)
        let payload = CreateStreamResponse(
            stream: .init(id: id, title: stream.title, agoraChannelId: id, agoraToken: token.token,
                          agoraUid: creator.agoraUid32, startTime: stream.startTime, isLive: stream.isLive),
            message: body.isScheduled ? "Stream scheduled successfully" : "Stream is live"
        )
        return try await payload.encodeResponse(status: .created, for: req)
    }

    /// POST /api/creator/streams/:streamId/stop — idempotent. A stream that never went live is
    /// cancelled (with the cancellation email), not ended.
    @Sendable func stop(req: Request) async throws -> MessageResponse {
        let stream = try await owned(req)
        if stream.isCancelled { throw StreamLifecycle.cancelledError }
        let body = try req.optionalJSON(StopStreamRequest.self)
        if let bodyID = body?.streamId, bodyID != stream.id {
            throw APIError.validation("streamId in the body does not match the URL")
        }
        if let replay = body?.replayUrl {
            try await lifecycle.setReplay(try await recordings.validatedReplay(replay, streamID: stream.id!), stream, on: req.db)
        }
        return switch try await lifecycle.stop(stream, on: req.db) {
        case .ended: MessageResponse(message: "Stream ended successfully")
        case .alreadyEnded: MessageResponse(message: "Stream already ended")
        case .cancelled: MessageResponse(message: "Stream cancelled: it had not gone live")
        }
    }

    /// PATCH /api/creator/streams/:streamId/status {isLive}
    @Sendable func updateStatus(req: Request) async throws -> MessageResponse {
        let stream = try await owned(req)
        let body = try req.json(UpdateStatusRequest.self)
        return switch try await lifecycle.setLive(body.isLive, stream, on: req.db) {
        case .wentLive, .resumed: MessageResponse(message: "Stream is live")
        case .paused: MessageResponse(message: "Stream is no longer live")
        case .unchanged: MessageResponse(message: body.isLive ? "Stream is live" : "Stream is no longer live")
        }
    }

    /// GET /api/creator/:creatorId/scheduled-streams?startDate&endDate&limit
    @Sendable func scheduled(req: Request) async throws -> ScheduledStreamsResponse {
        _ = try req.caller
        let creatorID = req.parameters.get("creatorId") ?? ""
        let sql = req.db.sql
        // SQLKit rows, not Fluent models: 200 model decodes per request cost more than the query.
        // A member's id answers exactly like an unknown one: members are not discoverable.
        guard Validation.isValidUserID(creatorID),
              try await sql.select().column("id").from(User.schema).where("id", .equal, SQLBind(creatorID))
                .where("role", .equal, SQLBind(UserRole.creator.rawValue)).first() != nil else {
            throw APIError.notFound("creator_not_found", "Creator not found")
        }
        let start = try Self.dateBound(req, "startDate", endOfDay: false)
        let end = try Self.dateBound(req, "endDate", endOfDay: true)
        if let start, let end, end < start { throw APIError.validation("endDate must not be before startDate") }
        var limit = 200
        if let raw = req.query[String.self, at: "limit"] {
            guard let n = Int(raw), (1...1000).contains(n) else { throw APIError.validation("limit must be an integer from 1 to 1000") }
            limit = n
        }
        // Served by the (creator_id, start_time) index.
        var query = sql.select()
            .columns("id", "title", "description", "workout_type", "thumbnail", "start_time", "end_time", "is_live", "went_live_at", "cancelled_at", "series_id")
            .from(LiveStream.schema).where("creator_id", .equal, SQLBind(creatorID))
        if req.query[String.self, at: "includeCancelled"] != "true" { query = query.where("cancelled_at", .is, SQLLiteral.null) }
        if let start { query = query.where("start_time", .greaterThanOrEqual, SQLBind(start)) }
        if let end { query = query.where("start_time", .lessThanOrEqual, SQLBind(end)) }
        let rows = try await query.orderBy("start_time", .ascending).orderBy("id", .ascending).limit(limit)
            .all(decoding: ScheduledStreamsResponse.Row.self)
        return ScheduledStreamsResponse(streams: rows.map(StreamSummary.init))
    }

    /// PATCH /api/creator/streams/:streamId — edit an upcoming stream. A new startTime moves the
    /// reminder, re-arms it, and emails those who got the scheduled email (updated .ics), once per
    /// burst of edits.
    @Sendable func update(req: Request) async throws -> UpdateStreamResponse {
        let stream = try await owned(req)
        let body = try req.json(UpdateStreamRequest.self)
        let policy = try Self.stagePolicy(body.stagePolicy)
        let onlyPolicy = policy != nil && body.title == nil && body.description == nil && body.workoutType == nil
            && body.thumbnail == nil && body.startTime == nil
        if let policy, onlyPolicy {
            try await lifecycle.setStagePolicy(policy, stream, on: req.db)
            return UpdateStreamResponse(stream: .init(stream), message: "Stream updated")
        }
        var edits = StreamEdits()
        if let title = body.title { edits.title = try Validation.text(title, field: "title", min: 1, max: 200)! }
        if let description = body.description { edits.details = .some(try Validation.text(description, field: "description", max: 5000, lines: .multi)) }
        if let workoutType = body.workoutType { edits.workoutType = .some(try Validation.text(workoutType, field: "workoutType", max: 60)) }
        edits.thumbnail = try Self.thumbnail(body.thumbnail)
        if let raw = body.startTime {
            guard let start = ISO8601.parse(raw) else { throw APIError.validation("startTime must be ISO 8601 with Z or an offset") }
            edits.startTime = start
        }
        let (updated, rescheduled) = try await lifecycle.edit(stream, edits, on: req.db)
        // The policy only once the rest of the edit was valid and applied.
        if let policy { try await lifecycle.setStagePolicy(policy, updated, on: req.db) }
        return UpdateStreamResponse(stream: .init(updated), message: rescheduled ? "Stream rescheduled" : "Stream updated")
    }

    /// POST /api/creator/streams/:streamId/cancel — idempotent; drops the reminder and tells
    /// those who got the scheduled email (METHOD:CANCEL .ics).
    @Sendable func cancel(req: Request) async throws -> MessageResponse {
        let stream = try await owned(req)
        return switch try await lifecycle.cancel(stream, on: req.db) {
        case .cancelled: MessageResponse(message: "Stream cancelled")
        case .alreadyCancelled: MessageResponse(message: "Stream already cancelled")
        }
    }

    static func stagePolicy(_ raw: String?) throws -> StagePolicy? {
        guard let raw else { return nil }
        guard let policy = StagePolicy(rawValue: raw) else { throw APIError.validation("stagePolicy must be host_only, invite or open") }
        return policy
    }

    /// nil: not sent; `.some(nil)`: cleared (""); else an https URL.
    static func thumbnail(_ raw: String?) throws -> String?? {
        guard let raw else { return nil }
        guard raw.isEmpty || Validation.isHTTPSURL(raw) else { throw APIError.validation("thumbnail must be an https URL of at most 2048 characters") }
        return .some(raw.isEmpty ? nil : raw)
    }

    /// A date-only bound (YYYY-MM-DD) covers the whole UTC day, so ranges stay inclusive.
    private static func dateBound(_ req: Request, _ name: String, endOfDay: Bool) throws -> Date? {
        guard let raw = req.query[String.self, at: name], !raw.isEmpty else { return nil }
        if let d = ISO8601.parse(raw) { return d }
        if raw.count == 10, let day = ISO8601.parse(raw + "T00:00:00Z") {
            return endOfDay ? day.addingTimeInterval(86_400 - 0.001) : day
        }
        throw APIError.validation("\(name) must be an ISO 8601 date-time (e.g. 2026-03-08T00:00:00Z) or a date (2026-03-08)")
    }
}
