import Fluent
import Foundation
import SQLKit

/// Who may publish in a stream, set by its creator (`stagePolicy`).
enum StagePolicy: String, Codable, Sendable, CaseIterable {
    /// Only the creator publishes (the default: a class with a coach and an audience).
    case hostOnly = "host_only"
    /// The creator brings members on stage (`POST …/stage/invite`); members may raise a hand.
    case invite
    /// Every eligible member may publish (small interactive classes; the old behaviour).
    case open
}

/// A member's place at a stream's stage: a raised hand, an invitation (until `expires_at`, or
/// until removed or the stream ends), or removed. One row per (stream, member).
enum StageStatus: String, Codable, Sendable, CaseIterable { case requested, invited, removed }

enum Stage {
    static let schema = "stage_members"

    static let notOnStage = APIError(.forbidden, "not_on_stage", "Only the creator and members on stage may publish in this stream")
    static let closed = APIError(.conflict, "stage_closed", "This stream's stage policy does not take members on stage (stagePolicy is host_only or open)")

    /// Active invitations of a stream: member → end of the invitation (nil: until removed).
    static func invitations(stream: String, now: Date, on sql: any SQLDatabase) async throws -> [String: Date?] {
        struct Row: Decodable { let user_id: String; let expires_at: Date? }
        let rows = try await sql.raw("""
            SELECT user_id, expires_at FROM stage_members WHERE stream_id = \(bind: stream) AND status = \(bind: StageStatus.invited.rawValue)
              AND (expires_at IS NULL OR expires_at > \(bind: now))
            """).all(decoding: Row.self)
        var out: [String: Date?] = [:]
        for r in rows { out[r.user_id] = r.expires_at }
        return out
    }

    /// Sets a member's stage row to `status` in one upsert.
    static func set(_ status: StageStatus, stream: String, user: String, now: Date, expiresAt: Date? = nil, on sql: any SQLDatabase) async throws {
        let requestedAt: Date? = status == .requested ? now : nil
        let invitedAt: Date? = status == .invited ? now : nil
        let removedAt: Date? = status == .removed ? now : nil
        try await sql.insert(into: schema)
            .columns("id", "stream_id", "user_id", "status", "requested_at", "invited_at", "expires_at", "removed_at", "updated_at")
            .values(SQLBind(UUID()), SQLBind(stream), SQLBind(user), SQLBind(status.rawValue), SQLBind(requestedAt), SQLBind(invitedAt),
                    SQLBind(expiresAt), SQLBind(removedAt), SQLBind(now))
            .onConflict(with: ["stream_id", "user_id"]) {
                var u = $0.set(excludedValueOf: "status").set(excludedValueOf: "updated_at")
                switch status {
                case .requested: u = u.set(excludedValueOf: "requested_at")
                case .invited: u = u.set(excludedValueOf: "invited_at").set(excludedValueOf: "expires_at").set("removed_at", to: SQLLiteral.null)
                case .removed: u = u.set(excludedValueOf: "removed_at").set("expires_at", to: SQLLiteral.null)
                }
                return u
            }.run()
    }
}
