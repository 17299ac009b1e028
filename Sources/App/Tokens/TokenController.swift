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
        let stream = try await StreamController.findStream(req)
        try StreamController.requireNotCancelled(stream)
        guard !stream.hasEnded else { throw APIError(.conflict, "stream_ended", "This stream has ended") }
        guard let user = try await User.find(caller.id, on: req.db) else {
            throw APIError.notFound("user_not_found", "The authenticated user is not known to this server")
        }
        guard user.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        if user.id != stream.$creator.id,
           let refusal = try await Moderation.refusal(user: user.id!, stream: stream, publisher: role == .publisher, now: req.now, on: req.db) {
            throw refusal
        }

        let issued = try req.deps.tokens.issue(channel: stream.agoraChannelId, uid: user.agoraUid32, role: role)
        return TokenResponse(token: issued.token, uid: user.agoraUid32, channelId: stream.agoraChannelId,
                             appId: req.deps.config.agora.appId, expiresAt: issued.expiresAt)
    }
}
