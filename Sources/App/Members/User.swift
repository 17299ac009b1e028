import Fluent
import Foundation

enum UserRole: String, Codable, Sendable, CaseIterable { case creator, member }

/// A member or creator synced from the host platform, which owns the id.
final class User: Model, @unchecked Sendable {
    static let schema = "users"

    @ID(custom: "id", generatedBy: .user) var id: String?
    @Field(key: "name") var name: String
    @Field(key: "email") var email: String
    @OptionalField(key: "timezone") var timezone: String?
    @Enum(key: "role") var role: UserRole
    @Field(key: "is_active") var isActive: Bool
    /// Allocated once at random (never derived from the id), stable across streams; 1…UInt32.max.
    @Field(key: "agora_uid") var agoraUid: Int64
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?

    init() {}

    var agoraUid32: UInt32 { UInt32(clamping: agoraUid) }

    var isActiveCreator: Bool { Self.isActiveCreator(role: role, isActive: isActive) }

    /// Who controls streams and may have notices sent in their name: an active account with the creator role.
    static func isActiveCreator(role: UserRole, isActive: Bool) -> Bool { role == .creator && isActive }
}

final class Follow: Model, @unchecked Sendable {
    static let schema = "follows"

    @ID(key: .id) var id: UUID?
    @Parent(key: "follower_id") var follower: User
    @Parent(key: "followed_id") var followed: User
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?

    init() {}
}

enum SubscriptionStatus: String, Codable, Sendable, CaseIterable { case active, cancelled, expired }

final class Subscription: Model, @unchecked Sendable {
    static let schema = "subscriptions"

    @ID(key: .id) var id: UUID?
    @Parent(key: "member_id") var member: User
    @Parent(key: "creator_id") var creator: User
    @Enum(key: "status") var status: SubscriptionStatus
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?

    init() {}
}
