import Vapor

struct ImportRequest: Content {
    struct UserInput: Codable, Sendable {
        let id: String
        let name: String
        let email: String
        let timezone: String?
        let role: String?
        let isActive: Bool?
    }
    struct FollowInput: Codable, Sendable {
        let followerId: String
        let followedId: String
    }
    struct SubscriptionInput: Codable, Sendable {
        let memberId: String
        let creatorId: String
        let status: String
    }
    let users: [UserInput]?
    let follows: [FollowInput]?
    let subscriptions: [SubscriptionInput]?
}

struct ImportResponse: Content {
    var success = true
    let users: Int
    let follows: Int
    let subscriptions: Int
}

/// PUT /api/admin/users/:id — the id comes from the path.
struct UpsertUserRequest: Content {
    let id: String?
    let name: String
    let email: String
    let timezone: String?
    let role: String?
    let isActive: Bool?
}

struct UserResponse: Content {
    struct Body: Content {
        let id: String
        let name: String
        let email: String
        @NullEncodable var timezone: String?
        let role: UserRole
        let isActive: Bool
        let agoraUid: UInt32
        @NullEncodable var createdAt: Date?
        @NullEncodable var updatedAt: Date?
    }
    var success = true
    let user: Body

    init(_ u: User) {
        user = Body(id: u.id ?? "", name: u.name, email: u.email, timezone: u.timezone, role: u.role,
                    isActive: u.isActive, agoraUid: u.agoraUid32, createdAt: u.createdAt, updatedAt: u.updatedAt)
    }
}

struct DeleteFollowRequest: Content {
    let followerId: String
    let followedId: String
}

struct DeletedResponse: Content {
    var success = true
    let deleted: Bool
}
