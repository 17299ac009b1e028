import Fluent
import SQLKit
import Vapor

struct ModerationController: RouteCollection {
    let lifecycle: StreamLifecycle
    let jobs: JobQueue
    /// Whether Agora REST credentials are set (kicking rules are then queued too).
    let kickingEnabled: Bool
    func boot(routes: any RoutesBuilder) throws {
        let stream = routes.grouped("creator", "streams", ":streamId", "moderation")
        stream.get(use: list)
        stream.post("block", use: block)
        stream.post("unblock", use: unblock)
        stream.post("mute", use: mute)
        stream.post("unmute", use: unmute)
        routes.post("creator", "blocks", use: ban)
        routes.delete("creator", "blocks", ":userId", use: unban)
    }

    struct Target: Content { let userId: String; let minutes: Int? }

    private func target(_ req: Request) async throws -> (LiveStream, User, Target) {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        let body = try req.json(Target.self)
        guard Validation.isValidUserID(body.userId), let user = try await User.find(body.userId, on: req.db) else {
            throw APIError.notFound("user_not_found", "No such user")
        }
        guard user.id != stream.$creator.id else { throw APIError.validation("A creator cannot moderate themselves") }
        if let m = body.minutes, !(1...43_200).contains(m) { throw APIError.validation("minutes must be 1–43200") }
        return (stream, user, body)
    }

    /// Queues the Agora side, if configured; the local row is already the truth.
    private func kick(_ req: Request, _ payload: KickingRules.Payload, on db: any Database) async throws {
        guard kickingEnabled else { return }
        try await jobs.enqueue(kind: KickingRules.jobKind, key: KickingRules.key(payload), payload: payload,
                                        maxAttempts: 10, replace: .always, on: db)
    }

    @Sendable func block(req: Request) async throws -> MessageResponse {
        let (stream, user, body) = try await target(req)
        let expires = body.minutes.map { req.now.addingTimeInterval(TimeInterval($0 * 60)) }
        try await req.db.writeTransaction { tx in
            try await StreamBlock.query(on: tx).filter(\.$streamID == stream.id!).filter(\.$userID == user.id!).delete()
            let b = StreamBlock(); b.streamID = stream.id!; b.userID = user.id!; b.expiresAt = expires
            try await b.create(on: tx)
            try await kick(req, .init(action: .create, streamId: stream.id!, userId: user.id!, kind: .block, seconds: body.minutes.map { $0 * 60 }), on: tx)
        }
        return MessageResponse(message: "User blocked")
    }

    @Sendable func unblock(req: Request) async throws -> MessageResponse {
        let (stream, user, _) = try await target(req)
        try await req.db.writeTransaction { tx in
            try await StreamBlock.query(on: tx).filter(\.$streamID == stream.id!).filter(\.$userID == user.id!).delete()
            try await kick(req, .init(action: .delete, streamId: stream.id!, userId: user.id!, kind: .block), on: tx)
        }
        return MessageResponse(message: "User unblocked")
    }

    @Sendable func mute(req: Request) async throws -> MessageResponse {
        let (stream, user, _) = try await target(req)
        try await req.db.writeTransaction { tx in
            if try await StreamMute.query(on: tx).filter(\.$streamID == stream.id!).filter(\.$userID == user.id!).count() == 0 {
                let m = StreamMute(); m.streamID = stream.id!; m.userID = user.id!
                try await m.create(on: tx)
            }
            try await kick(req, .init(action: .create, streamId: stream.id!, userId: user.id!, kind: .mute), on: tx)
        }
        return MessageResponse(message: "User muted")
    }

    @Sendable func unmute(req: Request) async throws -> MessageResponse {
        let (stream, user, _) = try await target(req)
        try await req.db.writeTransaction { tx in
            try await StreamMute.query(on: tx).filter(\.$streamID == stream.id!).filter(\.$userID == user.id!).delete()
            try await kick(req, .init(action: .delete, streamId: stream.id!, userId: user.id!, kind: .mute), on: tx)
        }
        return MessageResponse(message: "User unmuted")
    }

    struct ListResponse: Content {
        var success = true
        let blocks: [Block]
        let mutes: [String]
        let bans: [String]
        struct Block: Content { let userId: String; @NullEncodable var expiresAt: Date? }
    }

    @Sendable func list(req: Request) async throws -> ListResponse {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        let now = req.now
        let blocks = try await StreamBlock.query(on: req.db).filter(\.$streamID == stream.id!)
            .group(.or) { $0.filter(\.$expiresAt == nil).filter(\.$expiresAt > now) }.sort(\.$userID).all()
        let mutes = try await StreamMute.query(on: req.db).filter(\.$streamID == stream.id!).sort(\.$userID).all()
        let bans = try await CreatorBan.query(on: req.db).filter(\.$creatorID == stream.$creator.id).sort(\.$userID).all()
        return ListResponse(blocks: blocks.map { .init(userId: $0.userID, expiresAt: $0.expiresAt) }, mutes: mutes.map(\.userID), bans: bans.map(\.userID))
    }

    struct BanRequest: Content { let userId: String }

    /// Creator-wide ban: every stream of this creator, now and later.
    @Sendable func ban(req: Request) async throws -> MessageResponse {
        let creator = try await creatorCaller(req)
        let body = try req.json(BanRequest.self)
        guard Validation.isValidUserID(body.userId), try await User.find(body.userId, on: req.db) != nil else {
            throw APIError.notFound("user_not_found", "No such user")
        }
        guard body.userId != creator else { throw APIError.validation("A creator cannot ban themselves") }
        try await req.db.sql.insert(into: CreatorBan.schema).columns("id", "creator_id", "user_id", "created_at")
            .values(SQLBind(UUID()), SQLBind(creator), SQLBind(body.userId), SQLBind(req.now))
            .ignoringConflicts(with: ["creator_id", "user_id"]).run()
        // Kick them out of any stream of this creator that is live right now.
        for stream in try await LiveStream.query(on: req.db).filter(\.$creator.$id == creator).filter(state: .live).all() {
            try await kick(req, .init(action: .create, streamId: stream.id!, userId: body.userId, kind: .block), on: req.db)
        }
        return MessageResponse(message: "User banned from all your streams")
    }

    @Sendable func unban(req: Request) async throws -> MessageResponse {
        let creator = try await creatorCaller(req)
        let user = req.parameters.get("userId") ?? ""
        guard Validation.isValidUserID(user) else { throw APIError.validation("Invalid user id") }
        try await CreatorBan.query(on: req.db).filter(\.$creatorID == creator).filter(\.$userID == user).delete()
        for stream in try await LiveStream.query(on: req.db).filter(\.$creator.$id == creator).filter(state: .live).all() {
            // A per-stream block, if any, keeps its own rule.
            if try await StreamBlock.query(on: req.db).filter(\.$streamID == stream.id!).filter(\.$userID == user).count() == 0 {
                try await kick(req, .init(action: .delete, streamId: stream.id!, userId: user, kind: .block), on: req.db)
            }
        }
        return MessageResponse(message: "User unbanned")
    }

    private func creatorCaller(_ req: Request) async throws -> String {
        let caller = try req.caller
        _ = try await lifecycle.activeCreator(caller.id, on: req.db)
        return caller.id
    }
}
