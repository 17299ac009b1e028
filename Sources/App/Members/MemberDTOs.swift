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
        let timezone: String?
        let role: UserRole
        let isActive: Bool
        let agoraUid: UInt32
        let createdAt: Date?
        let updatedAt: Date?

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(name, forKey: .name)
            try c.encode(email, forKey: .email)
            try c.encode(timezone, forKey: .timezone)
            try c.encode(role, forKey: .role)
            try c.encode(isActive, forKey: .isActive)
            try c.encode(agoraUid, forKey: .agoraUid)
            try c.encode(createdAt, forKey: .createdAt)
            try c.encode(updatedAt, forKey: .updatedAt)
        }
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
