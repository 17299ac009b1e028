import Fluent
import SQLKit
import Vapor

struct StreamController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        let creator = routes.grouped("creator")
        creator.post("streams", "create", use: create)
        creator.post("streams", ":streamId", "stop", use: stop)
        creator.patch("streams", ":streamId", "status", use: updateStatus)
        creator.patch("streams", ":streamId", use: update)
        creator.post("streams", ":streamId", "cancel", use: cancel)
        creator.get(":creatorId", "scheduled-streams", use: scheduled)
    }

    /// POST /api/creator/streams/create
    @Sendable func create(req: Request) async throws -> Response {
        let caller = try req.caller
        let body = try req.content.decode(CreateStreamRequest.self)
        guard body.creatorId == caller.id else { throw APIError.forbidden("creatorId must be the authenticated user") }
        guard let creator = try await User.find(caller.id, on: req.db) else {
            throw APIError.notFound("user_not_found", "Creator not found")
        }
        guard creator.role == .creator else { throw APIError(.forbidden, "not_a_creator", "Only creators can create streams") }
        guard creator.isActive else { throw APIError(.forbidden, "creator_inactive", "This creator account is inactive") }

        let now = req.now
        let stream = LiveStream()
        let id = LiveStream.newID()
        stream.id = id
        stream.agoraChannelId = id
        stream.title = try Validation.text(body.title, field: "title", min: 1, max: 200)!
        stream.details = try Validation.text(body.description, field: "description", max: 5000)
        stream.workoutType = try Validation.text(body.workoutType, field: "workoutType", max: 60)
        if let thumbnail = body.thumbnail, !thumbnail.isEmpty {
            guard Validation.isHTTPSURL(thumbnail) else { throw APIError.validation("thumbnail must be an https URL of at most 2048 characters") }
            stream.thumbnail = thumbnail
        }
        if body.isScheduled {
            guard let raw = body.startTime else { throw APIError.validation("startTime is required for a scheduled stream") }
            guard let start = ISO8601.parse(raw) else {
                throw APIError.validation("startTime must be ISO 8601 with Z or an offset, e.g. 2026-03-08T07:30:00Z")
            }
            guard start > now else { throw APIError.validation("startTime of a scheduled stream must be in the future") }
            stream.startTime = start
        } else {
            // Going live now: the start is the moment it went live, whatever the client sent.
            stream.startTime = now
        }
        stream.isLive = !body.isScheduled
        stream.viewerCount = 0
        stream.reminderSent = false
        stream.scheduleRevision = 0
        stream.$creator.id = creator.id!

        let events = req.deps.streamEvents
        try await req.db.transaction { tx in
            try await stream.create(on: tx)
            if body.isScheduled { try await events.streamScheduled(stream, on: tx) } else { try await events.streamWentLive(stream, on: tx) }
        }
        let token = try req.deps.tokens.issue(channel: id, uid: creator.agoraUid32, role: .publisher)
        let payload = CreateStreamResponse(
            stream: .init(id: id, title: stream.title, agoraChannelId: id, agoraToken: token.token,
                          agoraUid: creator.agoraUid32, startTime: stream.startTime, isLive: stream.isLive),
            message: body.isScheduled ? "Stream scheduled successfully" : "Stream is live"
        )
        return try await payload.encodeResponse(status: .created, for: req)
    }

    /// POST /api/creator/streams/:streamId/stop — idempotent.
    @Sendable func stop(req: Request) async throws -> MessageResponse {
        let stream = try await Self.findOwnedStream(req)
        try Self.requireNotCancelled(stream)
        let body = try req.optionalContent(StopStreamRequest.self)
        if let bodyID = body?.streamId, bodyID != stream.id {
            throw APIError.validation("streamId in the body does not match the URL")
        }
        if let replay = body?.replayUrl {
            stream.replayUrl = try await RecordingController.validatedReplay(replay, stream: stream, req: req)
        }
        if stream.hasEnded {
            try await stream.save(on: req.db)
            return MessageResponse(message: "Stream already ended")
        }
        // Stopping the stream stops its cloud recording; a recording error never keeps the stream live.
        if stream.resourceId != nil {
            do { try await RecordingController.stopActiveRecording(stream, deps: req.deps, db: req.db) } catch {
                req.logger.warning("could not stop the cloud recording", metadata: ["stream": "\(stream.id ?? "")"])
            }
        }
        stream.isLive = false
        stream.endTime = req.now
        let events = req.deps.streamEvents
        try await req.db.transaction { tx in
            try await stream.save(on: tx)
            try await events.streamEnded(stream, on: tx)
        }
        return MessageResponse(message: "Stream ended successfully")
    }

    /// PATCH /api/creator/streams/:streamId/status {isLive}
    @Sendable func updateStatus(req: Request) async throws -> MessageResponse {
        let stream = try await Self.findOwnedStream(req)
        let body = try req.content.decode(UpdateStatusRequest.self)
        try Self.requireNotCancelled(stream)
        guard !stream.hasEnded else { throw APIError(.conflict, "stream_ended", "This stream has ended") }
        let wentLive = body.isLive && !stream.isLive
        stream.isLive = body.isLive
        let events = req.deps.streamEvents
        try await req.db.transaction { tx in
            try await stream.save(on: tx)
            if wentLive { try await events.streamWentLive(stream, on: tx) }
        }
        return MessageResponse(message: body.isLive ? "Stream is live" : "Stream is no longer live")
    }

    /// GET /api/creator/:creatorId/scheduled-streams?startDate&endDate&limit
    @Sendable func scheduled(req: Request) async throws -> ScheduledStreamsResponse {
        _ = try req.caller
        let creatorID = req.parameters.get("creatorId") ?? ""
        let sql = req.db as! any SQLDatabase
        // SQLKit rows, not Fluent models: 200 model decodes per request cost more than the query.
        guard Validation.isValidUserID(creatorID),
              try await sql.select().column("id").from(User.schema).where("id", .equal, SQLBind(creatorID)).first() != nil else {
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
            .columns("id", "title", "description", "workout_type", "thumbnail", "start_time", "end_time", "is_live", "cancelled_at")
            .from(LiveStream.schema).where("creator_id", .equal, SQLBind(creatorID))
        if req.query[String.self, at: "includeCancelled"] != "true" { query = query.where("cancelled_at", .is, SQLLiteral.null) }
        if let start { query = query.where("start_time", .greaterThanOrEqual, SQLBind(start)) }
        if let end { query = query.where("start_time", .lessThanOrEqual, SQLBind(end)) }
        let rows = try await query.orderBy("start_time", .ascending).orderBy("id", .ascending).limit(limit)
            .all(decoding: ScheduledStreamsResponse.Row.self)
        return ScheduledStreamsResponse(streams: rows.map(ScheduledStreamsResponse.Item.init))
    }

    /// PATCH /api/creator/streams/:streamId — edit an upcoming stream. A new startTime moves the
    /// reminder, re-arms it, and emails those who got the scheduled email (updated .ics).
    @Sendable func update(req: Request) async throws -> UpdateStreamResponse {
        let stream = try await Self.findOwnedStream(req)
        let body = try req.content.decode(UpdateStreamRequest.self)
        try Self.requireNotCancelled(stream)
        guard stream.isUpcoming else { throw APIError(.conflict, stream.isLive ? "stream_live" : "stream_ended", "Only upcoming streams can be edited") }
        if let title = body.title { stream.title = try Validation.text(title, field: "title", min: 1, max: 200)! }
        if let description = body.description { stream.details = try Validation.text(description, field: "description", max: 5000) }
        if let workoutType = body.workoutType { stream.workoutType = try Validation.text(workoutType, field: "workoutType", max: 60) }
        if let thumbnail = body.thumbnail {
            guard thumbnail.isEmpty || Validation.isHTTPSURL(thumbnail) else { throw APIError.validation("thumbnail must be an https URL of at most 2048 characters") }
            stream.thumbnail = thumbnail.isEmpty ? nil : thumbnail
        }
        var previous: Date?
        if let raw = body.startTime {
            guard let start = ISO8601.parse(raw) else { throw APIError.validation("startTime must be ISO 8601 with Z or an offset") }
            guard start > req.now else { throw APIError.validation("startTime must be in the future") }
            if start != stream.startTime {
                previous = stream.startTime
                stream.startTime = start
                stream.scheduleRevision += 1
                stream.reminderSent = false
            }
        }
        let events = req.deps.streamEvents
        let moved = previous
        try await req.db.transaction { tx in
            try await stream.save(on: tx)
            if let moved { try await events.streamRescheduled(stream, from: moved, on: tx) }
        }
        return UpdateStreamResponse(stream: .init(stream), message: moved == nil ? "Stream updated" : "Stream rescheduled")
    }

    /// POST /api/creator/streams/:streamId/cancel — idempotent; drops the reminder and tells
    /// those who got the scheduled email (METHOD:CANCEL .ics).
    @Sendable func cancel(req: Request) async throws -> MessageResponse {
        let stream = try await Self.findOwnedStream(req)
        if stream.isCancelled { return MessageResponse(message: "Stream already cancelled") }
        guard stream.isUpcoming else { throw APIError(.conflict, stream.isLive ? "stream_live" : "stream_ended", "Only upcoming streams can be cancelled") }
        stream.cancelledAt = req.now
        stream.scheduleRevision += 1
        let events = req.deps.streamEvents
        try await req.db.transaction { tx in
            try await stream.save(on: tx)
            try await events.streamCancelled(stream, on: tx)
        }
        return MessageResponse(message: "Stream cancelled")
    }

    // MARK: Helpers

    static let cancelledError = APIError(.conflict, "stream_cancelled", "This stream was cancelled")

    static func requireNotCancelled(_ stream: LiveStream) throws {
        guard !stream.isCancelled else { throw cancelledError }
    }

    static func findStream(_ req: Request) async throws -> LiveStream {
        let id = req.parameters.get("streamId") ?? ""
        guard !id.isEmpty, id.utf8.count <= 64, let stream = try await LiveStream.find(id, on: req.db) else {
            throw APIError.notFound("stream_not_found", "Stream not found")
        }
        return stream
    }

    /// The stream, if the caller is its creator (404 if unknown, 403 if someone else's).
    static func findOwnedStream(_ req: Request) async throws -> LiveStream {
        let caller = try req.caller
        let stream = try await findStream(req)
        guard stream.$creator.id == caller.id else { throw APIError.forbidden("Only the stream's creator can do this") }
        return stream
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

extension Request {
    /// Decodes a JSON body that the endpoint allows to be absent.
    func optionalContent<T: Content>(_ type: T.Type) throws -> T? {
        guard let body = body.data, body.readableBytes > 0 else { return nil }
        return try content.decode(T.self)
    }
}
