import Fluent
import SQLKit
import Vapor

/// Stage control (server-enforced; the token endpoint applies it): a member raises a hand, the
/// creator sees the queue, invites (for `minutes`, or until removed or the stream ends) and
/// removes. Removal also asks Agora to drop the member's publish privileges (kicking rule, through
/// the job worker) when Agora REST credentials are set.
struct StageController: RouteCollection {
    let lifecycle: StreamLifecycle
    let jobs: JobQueue
    let kickingEnabled: Bool
    let tokenTTL: Int
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        let stage = routes.grouped("streams", ":streamId", "stage")
        stage.get(use: state)
        stage.post("requests", use: raiseHand)
        stage.post("invite", use: invite)
        stage.post("remove", use: remove)
    }

    struct Target: Content { let userId: String; let minutes: Int? }
    struct Member: Content {
        let userId: String
        let name: String
        @NullEncodable var requestedAt: Date?
        @NullEncodable var invitedAt: Date?
        @NullEncodable var expiresAt: Date?
    }
    struct StateBody: Content { var success = true; let stagePolicy: StagePolicy; let requests: [Member]; let onStage: [Member] }
    struct RequestBody: Content { var success = true; let status: StageStatus; let stagePolicy: StagePolicy }

    /// POST …/stage/requests — the caller raises a hand (invite policy only).
    @Sendable func raiseHand(req: Request) async throws -> RequestBody {
        let caller = try req.caller.id
        let stream = try await lifecycle.notOver(req.parameters.get("streamId") ?? "", on: req.db)
        guard stream.stagePolicy == .invite else { throw Stage.closed }
        guard stream.$creator.id != caller else { throw APIError.validation("The creator is always on stage") }
        let moderation = try await req.deps.cache.moderation(.init(stream), on: req.db)
        if let refusal = moderation.refusal(user: caller, publisher: true, now: clock.now()) { throw refusal }
        guard try await User.find(caller, on: req.db)?.isActive == true else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        let onStage = try await Stage.invitations(stream: stream.id!, now: clock.now(), on: req.db.sql)[caller] != nil
        if !onStage { try await Stage.set(.requested, stream: stream.id!, user: caller, now: clock.now(), on: req.db.sql) }
        return RequestBody(status: onStage ? .invited : .requested, stagePolicy: stream.stagePolicy)
    }

    /// GET …/stage — the creator's view: raised hands (oldest first) and who is on stage.
    @Sendable func state(req: Request) async throws -> StateBody {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        struct Row: Decodable { let user_id: String; let name: String; let status: String; let requested_at: Date?; let invited_at: Date?; let expires_at: Date? }
        let rows = try await req.db.sql.raw("""
            SELECT m.user_id, u.name, m.status, m.requested_at, m.invited_at, m.expires_at FROM stage_members m JOIN users u ON u.id = m.user_id
            WHERE m.stream_id = \(bind: stream.id!) AND m.status <> \(bind: StageStatus.removed.rawValue)
            ORDER BY m.requested_at, m.invited_at LIMIT 1000
            """).all(decoding: Row.self)
        let now = clock.now()
        let member = { (r: Row) in Member(userId: r.user_id, name: r.name, requestedAt: r.requested_at, invitedAt: r.invited_at, expiresAt: r.expires_at) }
        return StateBody(stagePolicy: stream.stagePolicy,
                         requests: rows.filter { $0.status == StageStatus.requested.rawValue }.map(member),
                         onStage: rows.filter { $0.status == StageStatus.invited.rawValue && ($0.expires_at.map { $0 > now } ?? true) }.map(member))
    }

    private func target(_ req: Request) async throws -> (LiveStream, User, Target) {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        if stream.isCancelled { throw StreamLifecycle.cancelledError }
        guard !stream.hasEnded else { throw StreamLifecycle.endedError }
        let body = try req.json(Target.self)
        guard Validation.isValidUserID(body.userId), let user = try await User.find(body.userId, on: req.db) else {
            throw APIError.notFound("user_not_found", "No such user")
        }
        guard user.id != stream.$creator.id else { throw APIError.validation("The creator is always on stage") }
        if let m = body.minutes, !(1...240).contains(m) { throw APIError.validation("minutes must be 1–240") }
        return (stream, user, body)
    }

    /// POST …/stage/invite {userId, minutes?} — on stage until then (or until removed / the end).
    @Sendable func invite(req: Request) async throws -> MessageResponse {
        let (stream, user, body) = try await target(req)
        guard stream.stagePolicy == .invite else { throw Stage.closed }
        let moderation = try await req.deps.cache.moderation(.init(stream), on: req.db)
        if let refusal = moderation.refusal(user: user.id!, publisher: true, now: clock.now()) { throw refusal }
        let now = clock.now()
        try await req.db.writeTransaction { tx in
            try await Stage.set(.invited, stream: stream.id!, user: user.id!, now: now,
                                expiresAt: body.minutes.map { now.addingTimeInterval(TimeInterval($0 * 60)) }, on: tx.sql)
            // A publish ban from an earlier removal is lifted.
            if kickingEnabled {
                try await jobs.enqueue(kind: KickingRules.jobKind, key: KickingRules.key(.init(action: .delete, streamId: stream.id!, userId: user.id!, kind: .mute)),
                                       payload: KickingRules.Payload(action: .delete, streamId: stream.id!, userId: user.id!, kind: .mute),
                                       maxAttempts: 10, replace: .always, on: tx)
            }
        }
        return MessageResponse(message: "Invited on stage")
    }

    /// POST …/stage/remove {userId} — off stage now: no more publisher tokens, and Agora drops the
    /// publish privileges of the token already held (kicking rule, for that token's lifetime).
    @Sendable func remove(req: Request) async throws -> MessageResponse {
        let (stream, user, _) = try await target(req)
        // On an open stage everyone eligible publishes: taking one member off is a mute (or a block).
        guard stream.stagePolicy != .open else {
            throw APIError(.conflict, "stage_closed", "This stream's stage is open to everyone: mute or block the member instead")
        }
        try await req.db.writeTransaction { tx in
            try await Stage.set(.removed, stream: stream.id!, user: user.id!, now: clock.now(), on: tx.sql)
            if kickingEnabled {
                let payload = KickingRules.Payload(action: .create, streamId: stream.id!, userId: user.id!, kind: .mute, seconds: tokenTTL)
                try await jobs.enqueue(kind: KickingRules.jobKind, key: KickingRules.key(payload), payload: payload, maxAttempts: 10, replace: .always, on: tx)
            }
        }
        return MessageResponse(message: "Removed from stage")
    }
}
