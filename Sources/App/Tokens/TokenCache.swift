import Fluent
import SQLKit
import Foundation
import NIOConcurrencyHelpers
import Vapor

/// In-process snapshots of what the token endpoint reads — the stream's state, the caller's
/// account, the stream's moderation lists — so most token requests need no database round trip.
/// Each entry lives at most `ttl` seconds (TOKEN_CACHE_SECONDS, default 2; 0 turns the cache
/// off), and every write request handled by this process clears it, so a block or a stop here
/// takes effect at once and one made on another replica within `ttl`.
final class TokenCache: Sendable {
    struct StreamState: Sendable {
        let id: String
        let channel: String
        let creatorID: String
        let cancelled: Bool
        let ended: Bool
        /// Not live yet: tokens only from TOKEN_EARLY_JOIN_MINUTES before `startTime` (the creator always).
        let upcoming: Bool
        let startTime: Date
        let stagePolicy: StagePolicy
        /// Capacity-limited: only confirmed RSVPs (and the creator) get tokens.
        let capacity: Int?

        init(_ s: LiveStream) {
            (id, channel, creatorID, cancelled, ended, upcoming, startTime, stagePolicy, capacity) =
                (s.id!, s.agoraChannelId, s.$creator.id, s.isCancelled, s.hasEnded, s.isUpcoming, s.startTime, s.stagePolicy, s.capacity)
        }
    }

    struct Account: Sendable {
        let uid: UInt32
        let isActive: Bool
    }

    struct ModerationState: Sendable {
        let banned: Set<String>
        /// user → block expiry (nil = until unblocked)
        let blocked: [String: Date?]
        let muted: Set<String>

        func refusal(user: String, publisher: Bool, now: Date) -> APIError? {
            if banned.contains(user) { return Moderation.blockedError }
            if let expiry = blocked[user], expiry.map({ $0 > now }) ?? true { return Moderation.blockedError }
            if publisher, muted.contains(user) { return Moderation.mutedError }
            return nil
        }
    }

    private struct Entry<Value: Sendable>: Sendable { let value: Value; let expires: UInt64 }
    private struct State: Sendable {
        var streams: [String: Entry<StreamState?>] = [:]
        var accounts: [String: Entry<Account?>] = [:]
        var moderation: [String: Entry<ModerationState>] = [:]
        var stage: [String: Entry<[String: Date?]>] = [:]
        var registered: [String: Entry<Set<String>>] = [:]
        /// Bumped by every `removeAll`: a slow-path read that started before an invalidation does
        /// not store what it read (it may predate the write that invalidated).
        var generation: UInt64 = 0
    }

    let ttlNanoseconds: UInt64
    private let state = NIOLockedValueBox(State())
    static let maxEntries = 20_000

    /// Misses of `account`, read in groups (200 ids at most per query, up to 4 queries at once so a
    /// slow one does not hold up every join).
    private let accountReads = Coalescer<AccountRead, Account?>(maxBatch: 200, maxConcurrent: 4) { await TokenCache.readAccounts($0) }

    init(ttlSeconds: Double) { ttlNanoseconds = UInt64(max(0, ttlSeconds) * 1e9) }

    var isEnabled: Bool { ttlNanoseconds > 0 }

    func removeAll() { state.withLockedValue { $0 = State(generation: $0.generation &+ 1) } }
    private var generation: UInt64 { state.withLockedValue { $0.generation } }

    /// What the cache holds now, without the database. nil = not cached; `.some(nil)` = cached as absent.
    func peek(stream id: String) -> StreamState?? { lookup(\.streams, id) }
    func peek(account id: String) -> Account?? { lookup(\.accounts, id) }
    func peek(moderation streamID: String) -> ModerationState? { lookup(\.moderation, streamID) }
    func peek(stage streamID: String) -> [String: Date?]? { lookup(\.stage, streamID) }
    func peek(registered streamID: String) -> Set<String>? { lookup(\.registered, streamID) }

    /// Confirmed RSVPs of a capacity-limited stream, through the cache.
    func registered(_ streamID: String, on db: any Database) async throws -> Set<String> {
        if let hit = lookup(\.registered, streamID) { return hit }
        let gen = generation
        let value = try await RSVP.confirmed(stream: streamID, on: db.sql)
        store(\.registered, streamID, value, generation: gen)
        return value
    }

    /// The stream's active stage invitations (member → end), read through the cache.
    func stage(_ streamID: String, now: Date, on db: any Database) async throws -> [String: Date?] {
        if let hit = lookup(\.stage, streamID) { return hit }
        let gen = generation
        let value = try await Stage.invitations(stream: streamID, now: now, on: db.sql)
        store(\.stage, streamID, value, generation: gen)
        return value
    }

    func stream(_ id: String, on db: any Database) async throws -> StreamState? {
        if let hit = lookup(\.streams, id) { return hit }
        let gen = generation
        let value = try await LiveStream.find(id, on: db).map(StreamState.init)
        store(\.streams, id, value, generation: gen)
        return value
    }

    func account(_ userID: String, on db: any Database) async throws -> Account? {
        if let hit = lookup(\.accounts, userID) { return hit }
        // Every join of a class-start storm is a different member: the misses that arrive while one
        // read runs are read together by the next (`WHERE id IN (…)`), one plain SQL query.
        let gen = generation
        let value = try await accountReads.submit(AccountRead(userID: userID, db: db))
        store(\.accounts, userID, value, generation: gen)
        return value
    }

    private struct AccountRead: Sendable { let userID: String; let db: any Database }

    /// Reads the accounts of a group of misses in one query. Each read begins after its caller
    /// asked, so it sees every write made before.
    private static func readAccounts(_ reads: [AccountRead]) async -> [Result<Account?, any Error>] {
        guard let db = reads.first?.db else { return [] }
        let ids = Array(Set(reads.map(\.userID)))
        struct Row: Decodable { let id: String; let agora_uid: Int64; let is_active: Bool }
        do {
            let rows = try await db.sql.raw("SELECT id, agora_uid, is_active FROM users WHERE id IN (\(SQLList(ids.map { SQLBind($0) })))")
                .all(decoding: Row.self)
            var found: [String: Account] = [:]
            for row in rows { found[row.id] = Account(uid: UInt32(clamping: row.agora_uid), isActive: row.is_active) }
            return reads.map { .success(found[$0.userID]) }
        } catch {
            return reads.map { _ in .failure(error) }
        }
    }

    func moderation(_ stream: StreamState, on db: any Database) async throws -> ModerationState {
        if let hit = lookup(\.moderation, stream.id) { return hit }
        let gen = generation
        let bans = try await CreatorBan.query(on: db).filter(\.$creatorID == stream.creatorID).all(\.$userID)
        let blocks = try await StreamBlock.query(on: db).filter(\.$streamID == stream.id).all()
        let mutes = try await StreamMute.query(on: db).filter(\.$streamID == stream.id).all(\.$userID)
        var blocked: [String: Date?] = [:]
        for b in blocks { blocked[b.userID] = b.expiresAt }
        let value = ModerationState(banned: Set(bans), blocked: blocked, muted: Set(mutes))
        store(\.moderation, stream.id, value, generation: gen)
        return value
    }

    private func lookup<V: Sendable>(_ path: KeyPath<State, [String: Entry<V>]>, _ key: String) -> V? {
        guard isEnabled else { return nil }
        let now = DispatchTime.now().uptimeNanoseconds
        return state.withLockedValue { s in
            guard let e = s[keyPath: path][key], e.expires > now else { return nil }
            return e.value
        }
    }

    private func store<V: Sendable>(_ path: WritableKeyPath<State, [String: Entry<V>]>, _ key: String, _ value: V, generation: UInt64) {
        guard isEnabled else { return }
        let expires = DispatchTime.now().uptimeNanoseconds + ttlNanoseconds
        state.withLockedValue { s in
            guard s.generation == generation else { return } // invalidated while we read
            if s[keyPath: path].count >= Self.maxEntries { s[keyPath: path].removeAll(keepingCapacity: true) }
            s[keyPath: path][key] = Entry(value: value, expires: expires)
        }
    }
}

/// Clears the token cache after every request that may write (anything but GET/HEAD/OPTIONS).
struct TokenCacheInvalidation: Middleware {
    func respond(to request: Request, chainingTo next: any Responder) -> EventLoopFuture<Response> {
        switch request.method {
        case .GET, .HEAD, .OPTIONS: return next.respond(to: request)
        default:
            let cache = request.deps.cache
            return next.respond(to: request).always { _ in cache.removeAll() }
        }
    }
}
