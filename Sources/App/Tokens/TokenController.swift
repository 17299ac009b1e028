import AgoraAccessToken
import Fluent
import Vapor

struct TokenController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        // Served synchronously when the cache holds everything (no task hop, no database), else
        // through the async path that fills it.
        routes.grouped(RateLimitMiddleware.token).get("streams", ":streamId", "token") { req -> EventLoopFuture<Response> in
            do {
                if let ready = try Self.fromCache(req) { return ready.encodeResponse(for: req) }
            } catch {
                return req.eventLoop.makeFailedFuture(error)
            }
            return req.eventLoop.makeFutureWithTask { try await Self.token(req) }.flatMap { $0.encodeResponse(for: req) }
        }
    }

    struct TokenResponse: Content {
        var success = true
        let token: String
        let uid: UInt32
        let channelId: String
        let appId: String
        let expiresAt: Date
    }

    struct Input {
        let caller: String
        let streamID: String
        let role: RTCTokenBuilder.Role
    }

    /// GET /api/streams/:streamId/token?role=publisher|subscriber[&userId=]
    static func input(_ req: Request) throws -> Input {
        let caller = try req.caller
        if let claimed = req.query[String.self, at: "userId"], claimed != caller.id {
            throw APIError.forbidden("userId does not match the authenticated user")
        }
        let role: RTCTokenBuilder.Role
        switch req.query[String.self, at: "role"] ?? "subscriber" {
        case "subscriber": role = .subscriber
        case "publisher": role = .publisher
        default: throw APIError.validation("role must be 'publisher' or 'subscriber'")
        }
        let streamID = req.parameters.get("streamId") ?? ""
        guard !streamID.isEmpty, streamID.utf8.count <= 64 else { throw APIError.notFound("stream_not_found", "Stream not found") }
        return Input(caller: caller.id, streamID: streamID, role: role)
    }

    /// Everything from the cache, or nil if something is not cached.
    static func fromCache(_ req: Request) throws -> TokenResponse? {
        let input = try input(req)
        let cache = req.deps.cache
        guard let stream = cache.peek(stream: input.streamID), let account = cache.peek(account: input.caller) else { return nil }
        var moderation: TokenCache.ModerationState?
        if let stream, stream.creatorID != input.caller {
            guard let cached = cache.peek(moderation: stream.id) else { return nil }
            moderation = cached
        }
        return try issue(req, input, stream: stream, account: account, moderation: moderation)
    }

    /// The same decision, loading what the cache lacks (and caching it).
    static func token(_ req: Request) async throws -> TokenResponse {
        let input = try input(req)
        let cache = req.deps.cache
        let stream = try await cache.stream(input.streamID, on: req.db)
        let account = try await cache.account(input.caller, on: req.db)
        var moderation: TokenCache.ModerationState?
        if let stream, stream.creatorID != input.caller { moderation = try await cache.moderation(stream, on: req.db) }
        return try issue(req, input, stream: stream, account: account, moderation: moderation)
    }

    private static func issue(_ req: Request, _ input: Input, stream: TokenCache.StreamState?, account: TokenCache.Account?,
                              moderation: TokenCache.ModerationState?) throws -> TokenResponse {
        guard let stream else { throw APIError.notFound("stream_not_found", "Stream not found") }
        if stream.cancelled { throw StreamController.cancelledError }
        guard !stream.ended else { throw APIError(.conflict, "stream_ended", "This stream has ended") }
        guard let account else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        guard account.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        if let refusal = moderation?.refusal(user: input.caller, publisher: input.role == .publisher, now: req.now) { throw refusal }
        let issued = try req.deps.tokens.issue(channel: stream.channel, uid: account.uid, role: input.role)
        return TokenResponse(token: issued.token, uid: account.uid, channelId: stream.channel,
                             appId: req.deps.config.agora.appId, expiresAt: issued.expiresAt)
    }
}
