import AgoraAccessToken
import Fluent
import Vapor

struct TokenController: RouteCollection {
    let cache: TokenCache
    let tokens: AgoraTokenIssuer
    let appID: String
    let clock: AppClock
    var agora: AppConfig.AgoraSettings { tokens.settings }
    /// Longest publish privilege a member's token carries (the creator's follow the token TTL).
    static let memberPublishSeconds: TimeInterval = 600

    func boot(routes: any RoutesBuilder) throws {
        // Served synchronously when the cache holds everything (no task hop, no database), else
        // through the async path that fills it.
        let limited = routes.grouped(RateLimitMiddleware.token)
        // The SDK's token-privilege-will-expire callback: everything re-checked, from the database.
        limited.post("streams", ":streamId", "token", "renew") { req async throws -> Response in
            struct Body: Decodable { let role: String? }
            let role = try req.optionalJSON(Body.self)?.role ?? "subscriber"
            return try await token(req, role: role, fresh: true).response()
        }
        limited.get("streams", ":streamId", "token") { req -> EventLoopFuture<Response> in
            do {
                if let ready = try fromCache(req) { return req.eventLoop.makeSucceededFuture(ready.response()) }
            } catch {
                return req.eventLoop.makeFailedFuture(error)
            }
            return req.eventLoop.makeFutureWithTask { try await token(req).response() }
        }
    }

    struct TokenResponse: Content {
        var success = true
        let token: String
        let uid: UInt32
        let channelId: String
        let appId: String
        let expiresAt: Date
        /// When the publish privileges end (a stage invitation), else null.
        var publishExpiresAt: Date? = nil
        /// AGORA_RTM_ENABLED: an RTM token for the user's uid as account string, else null.
        var rtmToken: String? = nil

        /// The JSON by hand (same bytes JSONEncoder would give this flat shape): the hottest
        /// route should not pay for a generic encoder. Values are escaped all the same.
        func response() -> Response {
            var json = #"{"success":true,"token":"#
            json += Self.quoted(token) + #","uid":"# + String(uid) + #","channelId":"# + Self.quoted(channelId)
            json += #","appId":"# + Self.quoted(appId) + #","expiresAt":"# + Self.quoted(ISO8601.string(expiresAt))
            json += #","publishExpiresAt":"# + (publishExpiresAt.map { Self.quoted(ISO8601.string($0)) } ?? "null")
            json += #","rtmToken":"# + (rtmToken.map(Self.quoted) ?? "null") + "}"
            var headers = HTTPHeaders()
            headers.contentType = .json
            return Response(status: .ok, headers: headers, body: .init(string: json))
        }

        static func quoted(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\u{00}"..."\u{1F}": out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
    }

    struct Input {
        let caller: String
        let streamID: String
        let role: RTCTokenBuilder.Role
    }

    /// GET /api/streams/:streamId/token?role=publisher|subscriber[&userId=]
    func input(_ req: Request, role requested: String? = nil) throws -> Input {
        let caller = try req.caller
        let query = Self.query(req.url.query)
        if let claimed = query["userId"], claimed != caller.id {
            throw APIError.forbidden("userId does not match the authenticated user")
        }
        let role: RTCTokenBuilder.Role
        switch requested ?? query["role"] ?? "subscriber" {
        case "subscriber": role = .subscriber
        case "publisher": role = .publisher
        default: throw APIError.validation("role must be 'publisher' or 'subscriber'")
        }
        let streamID = req.parameters.get("streamId") ?? ""
        guard !streamID.isEmpty, streamID.utf8.count <= 64 else { throw APIError.notFound("stream_not_found", "Stream not found") }
        return Input(caller: caller.id, streamID: streamID, role: role)
    }

    /// `role` and `userId` from the query string (first occurrence wins, as with Vapor's decoder).
    static func query(_ raw: String?) -> [String: String] {
        guard let raw, !raw.isEmpty else { return [:] }
        var out: [String: String] = [:]
        for pair in raw.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String { String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
            let key = decode(parts[0])
            if out[key] == nil { out[key] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        return out
    }

    /// Everything from the cache, or nil if something is not cached.
    func fromCache(_ req: Request) throws -> TokenResponse? {
        let input = try input(req)
        guard let stream = cache.peek(stream: input.streamID), let account = cache.peek(account: input.caller) else { return nil }
        var moderation: TokenCache.ModerationState?
        var stage: [String: Date?]?
        var registered: Set<String>?
        if let stream, stream.creatorID != input.caller {
            guard let cached = cache.peek(moderation: stream.id) else { return nil }
            moderation = cached
            if input.role == .publisher, stream.stagePolicy == .invite {
                guard let onStage = cache.peek(stage: stream.id) else { return nil }
                stage = onStage
            }
            if stream.capacity != nil {
                guard let list = cache.peek(registered: stream.id) else { return nil }
                registered = list
            }
        }
        return try issue(req, input, stream: stream, account: account, moderation: moderation, stage: stage, registered: registered)
    }

    /// The same decision, loading what the cache lacks (and caching it); `fresh` (renewal) reads
    /// everything from the database.
    func token(_ req: Request, role: String? = nil, fresh: Bool = false) async throws -> TokenResponse {
        let input = try input(req, role: role)
        if fresh { cache.removeAll() }
        let stream = try await cache.stream(input.streamID, on: req.db)
        let account = try await cache.account(input.caller, on: req.db)
        var moderation: TokenCache.ModerationState?
        var stage: [String: Date?]?
        var registered: Set<String>?
        if let stream, stream.creatorID != input.caller {
            moderation = try await cache.moderation(stream, on: req.db)
            if input.role == .publisher, stream.stagePolicy == .invite { stage = try await cache.stage(stream.id, now: clock.now(), on: req.db) }
            if stream.capacity != nil { registered = try await cache.registered(stream.id, on: req.db) }
        }
        return try issue(req, input, stream: stream, account: account, moderation: moderation, stage: stage, registered: registered)
    }

    /// The one rule: the stream exists and has not ended; the account is active; blocks and mutes
    /// first; members only from `earlyJoinSeconds` before a scheduled start; publishers only the
    /// creator, members on stage (their publish privileges end with the invitation) or anyone when
    /// the stage is open.
    private func issue(_ req: Request, _ input: Input, stream: TokenCache.StreamState?, account: TokenCache.Account?,
                       moderation: TokenCache.ModerationState?, stage: [String: Date?]?, registered: Set<String>?) throws -> TokenResponse {
        guard let stream else { throw APIError.notFound("stream_not_found", "Stream not found") }
        if stream.cancelled { throw StreamLifecycle.cancelledError }
        guard !stream.ended else { throw StreamLifecycle.endedError }
        guard let account else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        guard account.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        let now = clock.now()
        if let refusal = moderation?.refusal(user: input.caller, publisher: input.role == .publisher, now: now) { throw refusal }
        let isCreator = stream.creatorID == input.caller
        if !isCreator, stream.upcoming, now < stream.startTime.addingTimeInterval(-agora.earlyJoinSeconds) {
            throw APIError(.forbidden, "too_early", "Tokens for this stream are issued from \(Int(agora.earlyJoinSeconds / 60)) minutes before its start (\(ISO8601.string(stream.startTime)))")
        }
        // A class with limited places: only confirmed RSVPs (members on stage were invited by the creator).
        if !isCreator, stream.capacity != nil, !(registered?.contains(input.caller) ?? false), stage?[input.caller] == nil {
            throw RSVP.notRegistered
        }
        var publishUntil: Date?
        if input.role == .publisher, !isCreator {
            switch stream.stagePolicy {
            case .open: break
            case .hostOnly: throw Stage.notOnStage
            case .invite:
                guard let invitation = stage?[input.caller] else { throw Stage.notOnStage }
                publishUntil = invitation
            }
            // A member's publish privileges last at most `memberPublishSeconds`: the SDK's
            // privilege-will-expire callback then renews, which re-checks stage, mutes and blocks —
            // so a removal or a mute bites within minutes even without Agora's kicking rules.
            let recheck = now.addingTimeInterval(Self.memberPublishSeconds)
            publishUntil = min(publishUntil ?? recheck, recheck)
        }
        let issued = try tokens.issue(channel: stream.channel, uid: account.uid, role: input.role, publishUntil: publishUntil)
        return TokenResponse(token: issued.token, uid: account.uid, channelId: stream.channel, appId: appID, expiresAt: issued.expiresAt,
                             publishExpiresAt: issued.publishExpiresAt,
                             rtmToken: agora.rtmEnabled ? try tokens.rtm(account: AccessToken2.uidString(account.uid)) : nil)
    }
}
