import Fluent
import SQLKit
import Vapor

/// A member's choice of email kinds (default: all).
final class NotificationPreference: Model, @unchecked Sendable {
    static let schema = "notification_preferences"
    @ID(custom: "user_id", generatedBy: .user) var id: String?
    @Field(key: "live_now") var liveNow: Bool
    @Field(key: "scheduled") var scheduled: Bool
    @Field(key: "reminder") var reminder: Bool
    /// Push per kind (issue 21): on for live-now and reminders by default.
    @Field(key: "push_live_now") var pushLiveNow: Bool
    @Field(key: "push_reminder") var pushReminder: Bool
    @Field(key: "push_scheduled") var pushScheduled: Bool
    @Field(key: "push_rescheduled") var pushRescheduled: Bool
    @Field(key: "push_cancelled") var pushCancelled: Bool
    @Timestamp(key: "updated_at", on: .update) var updatedAt: Date?
    init() {}
}

/// "No emails about this creator" (one-click unsubscribe, or the member's own setting).
final class NotificationMute: Model, @unchecked Sendable {
    static let schema = "notification_mutes"
    @ID(key: .id) var id: UUID?
    @Parent(key: "member_id") var member: User
    @Parent(key: "creator_id") var creator: User
    @Timestamp(key: "created_at", on: .create) var createdAt: Date?
    init() {}

    static func mute(member: String, creator: String, on db: any Database) async throws {
        try await db.sql.insert(into: schema).columns("id", "member_id", "creator_id", "created_at")
            .values(SQLBind(UUID()), SQLBind(member), SQLBind(creator), SQLBind(Date()))
            .ignoringConflicts(with: ["member_id", "creator_id"]).run()
    }
}

/// `GET/PUT /api/me/notification-preferences` for the authenticated member.
struct PreferencesController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("me", "notification-preferences", use: get)
        routes.put("me", "notification-preferences", use: put)
    }

    struct Body: Content {
        var success = true
        let preferences: Kinds
        let mutedCreators: [String]
    }
    /// Email switches at the top level (rescheduled and cancelled emails follow `scheduled`), push per kind in `push`.
    struct Kinds: Content { let liveNow: Bool; let scheduled: Bool; let reminder: Bool; let push: PushKinds }
    struct PushKinds: Content { let liveNow: Bool; let reminder: Bool; let scheduled: Bool; let rescheduled: Bool; let cancelled: Bool }
    struct PushUpdate: Content { let liveNow: Bool?; let reminder: Bool?; let scheduled: Bool?; let rescheduled: Bool?; let cancelled: Bool? }
    struct Update: Content {
        let liveNow: Bool?
        let scheduled: Bool?
        let reminder: Bool?
        let push: PushUpdate?
        /// Replaces the whole list when present.
        let mutedCreators: [String]?
    }

    @Sendable func get(req: Request) async throws -> Body {
        try await current(req, userID: try req.caller.id)
    }

    @Sendable func put(req: Request) async throws -> Body {
        let userID = try req.caller.id
        guard try await User.find(userID, on: req.db) != nil else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        let update = try req.json(Update.self)
        if let muted = update.mutedCreators {
            guard muted.count <= 1000, muted.allSatisfy(Validation.isValidUserID) else {
                throw APIError.validation("mutedCreators must be at most 1000 valid user ids")
            }
            // One answer for "no such user" and "a member, not a creator": members' ids are not discoverable here.
            let creators = try await User.query(on: req.db).filter(\.$id ~~ muted).filter(\.$role == .creator).count()
            guard creators == Set(muted).count else { throw APIError.validation("mutedCreators must name creators") }
        }
        let now = req.now
        try await req.db.writeTransaction { tx in
            // Insert-if-missing then update only what was sent: two concurrent first saves cannot collide.
            let sql = tx.sql
            try await sql.insert(into: NotificationPreference.schema).columns("user_id", "live_now", "scheduled", "reminder", "updated_at")
                .values(SQLBind(userID), SQLBind(true), SQLBind(true), SQLBind(true), SQLBind(now))
                .ignoringConflicts(with: ["user_id"]).run()
            var changes = sql.update(NotificationPreference.schema).set("updated_at", to: SQLBind(now))
            if let v = update.liveNow { changes = changes.set("live_now", to: SQLBind(v)) }
            if let v = update.scheduled { changes = changes.set("scheduled", to: SQLBind(v)) }
            if let v = update.reminder { changes = changes.set("reminder", to: SQLBind(v)) }
            if let push = update.push {
                for (column, value) in [("push_live_now", push.liveNow), ("push_reminder", push.reminder), ("push_scheduled", push.scheduled),
                                        ("push_rescheduled", push.rescheduled), ("push_cancelled", push.cancelled)] {
                    if let value { changes = changes.set(SQLIdentifier(column), to: SQLBind(value)) }
                }
            }
            try await changes.where("user_id", .equal, SQLBind(userID)).run()
            if let muted = update.mutedCreators {
                try await NotificationMute.query(on: tx).filter(\.$member.$id == userID).delete()
                for creator in Set(muted) where creator != userID { try await NotificationMute.mute(member: userID, creator: creator, on: tx) }
            }
        }
        return try await current(req, userID: userID)
    }

    private func current(_ req: Request, userID: String) async throws -> Body {
        let pref = try await NotificationPreference.find(userID, on: req.db)
        let muted = try await NotificationMute.query(on: req.db).filter(\.$member.$id == userID).all().map(\.$creator.id).sorted()
        let push = PushKinds(liveNow: pref?.pushLiveNow ?? true, reminder: pref?.pushReminder ?? true, scheduled: pref?.pushScheduled ?? false,
                             rescheduled: pref?.pushRescheduled ?? false, cancelled: pref?.pushCancelled ?? false)
        return Body(preferences: Kinds(liveNow: pref?.liveNow ?? true, scheduled: pref?.scheduled ?? true, reminder: pref?.reminder ?? true, push: push),
                    mutedCreators: muted)
    }
}
