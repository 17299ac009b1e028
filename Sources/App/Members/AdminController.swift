import Fluent
import Vapor

/// The host platform's sync API (guarded by AdminAuthMiddleware).
struct AdminController: RouteCollection {
    let uids: UidAllocator
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        // 10,000 users + 10,000 follows is about 2.5 MB; leave room.
        routes.grouped(RateLimitMiddleware.adminImport).on(.POST, "import", body: .collect(maxSize: "16mb"), use: importMembers)
        routes.put("users", ":id", use: upsertUser)
        routes.delete("users", ":id", use: deleteUser)
        routes.delete("follows", use: deleteFollow)
    }

    @Sendable func importMembers(req: Request) async throws -> ImportResponse {
        let body = try req.json(ImportRequest.self)
        return try await MemberImporter(db: req.db, uids: uids, now: clock.now()).run(body)
    }

    /// PUT /api/admin/users/:id — create or update one user (incremental sync).
    @Sendable func upsertUser(req: Request) async throws -> UserResponse {
        let id = try Self.userID(req)
        let body = try req.json(UpsertUserRequest.self)
        if let bodyID = body.id, bodyID != id { throw APIError.validation("id in the body does not match the URL") }
        let input = ImportRequest.UserInput(id: id, name: body.name, email: body.email, timezone: body.timezone, role: body.role, isActive: body.isActive)
        _ = try await MemberImporter(db: req.db, uids: uids, now: clock.now()).run(ImportRequest(users: [input], follows: nil, subscriptions: nil))
        guard let user = try await User.find(id, on: req.db) else { throw APIError(.internalServerError, "internal_error", "User vanished") }
        return UserResponse(user)
    }

    /// DELETE /api/admin/users/:id — erasure: follows, subscriptions and streams cascade with the row,
    /// which is the only place this server stores the address.
    @Sendable func deleteUser(req: Request) async throws -> DeletedResponse {
        let id = try Self.userID(req)
        guard let user = try await User.find(id, on: req.db) else { return DeletedResponse(deleted: false) }
        try await user.delete(on: req.db)
        return DeletedResponse(deleted: true)
    }

    @Sendable func deleteFollow(req: Request) async throws -> DeletedResponse {
        let body = try req.json(DeleteFollowRequest.self)
        guard Validation.isValidUserID(body.followerId), Validation.isValidUserID(body.followedId) else {
            throw APIError.validation("followerId and followedId must be valid user ids")
        }
        let query = Follow.query(on: req.db).filter(\.$follower.$id == body.followerId).filter(\.$followed.$id == body.followedId)
        let existed = try await query.count() > 0
        try await query.delete()
        return DeletedResponse(deleted: existed)
    }

    private static func userID(_ req: Request) throws -> String {
        let id = req.parameters.get("id") ?? ""
        guard Validation.isValidUserID(id) else { throw APIError.validation("id must be 1–128 characters of letters, digits and . _ : @ -") }
        return id
    }
}
