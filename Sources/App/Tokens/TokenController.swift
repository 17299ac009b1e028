import AgoraAccessToken
import Fluent
import Vapor

struct TokenController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.grouped(RateLimitMiddleware.token).get("streams", ":streamId", "token", use: token)
    }

    struct TokenResponse: Content {
        var success = true
        let token: String
        let uid: UInt32
        let channelId: String
        let appId: String
        let expiresAt: Date
    }

    /// GET /api/streams/:streamId/token?role=publisher|subscriber[&userId=]
    @Sendable func token(req: Request) async throws -> TokenResponse {
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
        // Served from the short-lived cache (TokenCache): no database round trip on most requests.
        let cache = req.deps.cache
        let streamID = req.parameters.get("streamId") ?? ""
        guard !streamID.isEmpty, streamID.utf8.count <= 64, let stream = try await cache.stream(streamID, on: req.db) else {
            throw APIError.notFound("stream_not_found", "Stream not found")
        }
        if stream.cancelled { throw StreamController.cancelledError }
        guard !stream.ended else { throw APIError(.conflict, "stream_ended", "This stream has ended") }
        guard let user = try await cache.account(caller.id, on: req.db) else {
            throw APIError.notFound("user_not_found", "The authenticated user is not known to this server")
        }
        guard user.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        if caller.id != stream.creatorID,
           let refusal = try await cache.moderation(stream, on: req.db).refusal(user: caller.id, publisher: role == .publisher, now: req.now) {
            throw refusal
        }

        let issued = try req.deps.tokens.issue(channel: stream.channel, uid: user.uid, role: role)
        return TokenResponse(token: issued.token, uid: user.uid, channelId: stream.channel,
                             appId: req.deps.config.agora.appId, expiresAt: issued.expiresAt)
    }
}
