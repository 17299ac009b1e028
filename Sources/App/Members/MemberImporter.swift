import Fluent
import SQLKit
import Vapor

/// Idempotent bulk upsert of the host platform's users, follows and subscriptions.
/// The whole request is validated before anything is written; writes happen in one transaction,
/// in multi-row statements, so 10,000 users take a fraction of a second, not 10,000 round trips.
struct MemberImporter {
    let db: any Database
    let uids: UidAllocator
    let now: Date

    private static let chunkSize = 500

    struct ValidUser: Sendable {
        let id, name, email: String
        let timezone: String?
        /// nil = not sent: a new user gets the default (member, active), an existing one keeps its value.
        let role: UserRole?
        let isActive: Bool?
    }

    func run(_ request: ImportRequest) async throws -> ImportResponse {
        let users = try (request.users ?? []).enumerated().map { try Self.validate($1, at: "users[\($0)]") }
        var seen = Set<String>()
        for (i, u) in users.enumerated() where !seen.insert(u.id).inserted {
            throw APIError.validation("users[\(i)]: id '\(u.id)' appears more than once in this import")
        }
        // Follow pairs: duplicates collapse (the result is the same either way).
        var followPairs: [(String, String)] = []
        var seenFollows = Set<[String]>()
        for (i, f) in (request.follows ?? []).enumerated() {
            try Self.checkPair(f.followerId, f.followedId, at: "follows[\(i)]", names: ("followerId", "followedId"))
            if seenFollows.insert([f.followerId, f.followedId]).inserted { followPairs.append((f.followerId, f.followedId)) }
        }
        // Subscriptions: the last row for a pair wins.
        var subscriptionStatus: [[String]: SubscriptionStatus] = [:]
        var subscriptionOrder: [[String]] = []
        for (i, s) in (request.subscriptions ?? []).enumerated() {
            try Self.checkPair(s.memberId, s.creatorId, at: "subscriptions[\(i)]", names: ("memberId", "creatorId"))
            guard let status = SubscriptionStatus(rawValue: s.status) else {
                throw APIError.validation("subscriptions[\(i)]: status must be active, cancelled or expired")
            }
            let key = [s.memberId, s.creatorId]
            if subscriptionStatus.updateValue(status, forKey: key) == nil { subscriptionOrder.append(key) }
        }

        // Every referenced user must exist already or arrive in this import.
        let batchIDs = Set(users.map(\.id))
        let referenced = Set(followPairs.flatMap { [$0.0, $0.1] } + subscriptionOrder.flatMap { $0 }).subtracting(batchIDs)
        let known = try await existingUsers(Array(referenced), on: db)
        func check(_ id: String, _ row: String) throws {
            if !batchIDs.contains(id) && known[id] == nil { throw APIError.validation("\(row): user '\(id)' does not exist") }
        }
        for (i, f) in (request.follows ?? []).enumerated() {
            try check(f.followerId, "follows[\(i)]"); try check(f.followedId, "follows[\(i)]")
        }
        for (i, s) in (request.subscriptions ?? []).enumerated() {
            try check(s.memberId, "subscriptions[\(i)]"); try check(s.creatorId, "subscriptions[\(i)]")
        }

        let subscriptions = subscriptionOrder.map { ($0[0], $0[1], subscriptionStatus[$0]!) }
        let follows = followPairs
        try await Self.retryingClashes {
            try await db.writeTransaction { tx in
                try await upsertUsers(users, on: tx)
                try await insertFollows(follows, on: tx)
                try await upsertSubscriptions(subscriptions, on: tx)
            }
        }
        return ImportResponse(users: users.count, follows: (request.follows ?? []).count, subscriptions: (request.subscriptions ?? []).count)
    }

    // MARK: Validation

    static func validate(_ u: ImportRequest.UserInput, at row: String) throws -> ValidUser {
        try validate(id: u.id, name: u.name, email: u.email, timezone: u.timezone, role: u.role, isActive: u.isActive, at: row)
    }

    static func validate(id: String, name: String, email: String, timezone: String?, role: String?, isActive: Bool?, at row: String) throws -> ValidUser {
        func fail(_ m: String) -> APIError { .validation("\(row): \(m)") }
        guard Validation.isValidUserID(id) else { throw fail("id must be 1–128 characters of letters, digits and . _ : @ -") }
        let cleanName: String?
        do { cleanName = try Validation.text(name, field: "name", min: 1, max: 200) } catch let e as APIError { throw fail(e.message) }
        guard Validation.isValidEmail(email) else { throw fail("email is not a valid address") }
        var zone: String?
        if let tz = timezone, !tz.isEmpty {
            guard Validation.isValidTimeZone(tz) else { throw fail("timezone '\(tz.prefix(64))' is not a valid IANA time zone id") }
            zone = tz
        }
        var parsedRole: UserRole?
        if let role {
            guard let r = UserRole(rawValue: role) else { throw fail("role must be creator or member") }
            parsedRole = r
        }
        return ValidUser(id: id, name: cleanName!, email: email, timezone: zone, role: parsedRole, isActive: isActive)
    }

    private static func checkPair(_ a: String, _ b: String, at row: String, names: (String, String)) throws {
        guard Validation.isValidUserID(a) else { throw APIError.validation("\(row): \(names.0) is not a valid user id") }
        guard Validation.isValidUserID(b) else { throw APIError.validation("\(row): \(names.1) is not a valid user id") }
        guard a != b else { throw APIError.validation("\(row): \(names.0) and \(names.1) must differ") }
    }

    // MARK: Writes

    private func upsertUsers(_ users: [ValidUser], on tx: any Database) async throws {
        guard !users.isEmpty else { return }
        let existing = try await existingUsers(users.map(\.id), on: tx)
        var fresh = try await uids.allocate(count: users.count - existing.count, on: tx).makeIterator()
        let sql = tx.sql
        for chunk in users.chunks(of: Self.chunkSize) {
            var insert = sql.insert(into: User.schema)
                .columns("id", "name", "email", "email_hash", "timezone", "role", "is_active", "agora_uid", "created_at", "updated_at")
            for u in chunk {
                // An existing user keeps the uid allocated when it was first seen, and what a sync left out.
                let old = existing[u.id]
                let uid = old?.agora_uid ?? fresh.next()!
                let role = u.role?.rawValue ?? old?.role ?? UserRole.member.rawValue
                insert = insert.values(SQLBind(u.id), SQLBind(u.name), SQLBind(u.email), SQLBind(EmailHash.of(u.email)), SQLBind(u.timezone), SQLBind(role),
                                       SQLBind(u.isActive ?? old?.is_active ?? true), SQLBind(uid), SQLBind(now), SQLBind(now))
            }
            try await insert.onConflict(with: ["id"]) {
                $0.set(excludedValueOf: "name").set(excludedValueOf: "email").set(excludedValueOf: "email_hash").set(excludedValueOf: "timezone")
                    .set(excludedValueOf: "role").set(excludedValueOf: "is_active").set(excludedValueOf: "updated_at")
            }.run()
        }
    }

    private func insertFollows(_ pairs: [(String, String)], on tx: any Database) async throws {
        let sql = tx.sql
        for chunk in pairs.chunks(of: Self.chunkSize) {
            var insert = sql.insert(into: Follow.schema).columns("id", "follower_id", "followed_id", "created_at")
            for (follower, followed) in chunk {
                insert = insert.values(SQLBind(UUID()), SQLBind(follower), SQLBind(followed), SQLBind(now))
            }
            try await insert.ignoringConflicts(with: ["follower_id", "followed_id"]).run()
        }
    }

    private func upsertSubscriptions(_ rows: [(String, String, SubscriptionStatus)], on tx: any Database) async throws {
        let sql = tx.sql
        for chunk in rows.chunks(of: Self.chunkSize) {
            var insert = sql.insert(into: Subscription.schema).columns("id", "member_id", "creator_id", "status", "created_at", "updated_at")
            for (member, creator, status) in chunk {
                insert = insert.values(SQLBind(UUID()), SQLBind(member), SQLBind(creator), SQLBind(status.rawValue), SQLBind(now), SQLBind(now))
            }
            try await insert.onConflict(with: ["member_id", "creator_id"]) {
                $0.set(excludedValueOf: "status").set(excludedValueOf: "updated_at")
            }.run()
        }
    }

    struct Existing: Decodable { let id: String; let agora_uid: Int64; let role: String; let is_active: Bool }

    /// Those of `ids` that exist, with what an upsert keeps when a field is not sent.
    private func existingUsers(_ ids: [String], on db: any Database) async throws -> [String: Existing] {
        var result: [String: Existing] = [:]
        for chunk in ids.chunks(of: Self.chunkSize) {
            let rows = try await db.sql.select().columns("id", "agora_uid", "role", "is_active").from(User.schema)
                .where("id", .in, Array(chunk)).all(decoding: Existing.self)
            for r in rows { result[r.id] = r }
        }
        return result
    }

    /// A concurrent writer can take a uid between our check and our insert; the unique index
    /// rejects the whole transaction and we simply run it again with fresh uids.
    static func retryingClashes<T>(attempts: Int = 3, _ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            do { return try await body() } catch let error as any DatabaseError where error.isConstraintFailure && attempt < attempts {
                continue
            }
        }
    }
}
