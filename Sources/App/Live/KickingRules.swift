import Fluent
import Foundation
import Vapor

/// What a moderation action takes away in the channel.
enum ModerationKind: String, Codable, Sendable {
    /// Out of the stream: Agora's `join_channel` privilege.
    case block
    /// Off stage: `publish_audio` + `publish_video`.
    case mute

    var privileges: [String] { self == .block ? ["join_channel"] : ["publish_audio", "publish_video"] }
}

/// Agora's kicking-rule API (agora.md §7), called from jobs so failures retry and never undo the
/// local block or mute.
struct KickingRules: Sendable {
    static let jobKind = JobKind.kickingRule
    let settings: CloudRecordingSettings
    let appID: String
    let client: any Client

    struct Payload: Codable, Sendable {
        enum Action: String, Codable, Sendable { case create, delete }
        let action: Action
        let streamId: String
        let userId: String
        let kind: ModerationKind
        var seconds: Int? = nil
    }

    static func key(_ p: Payload) -> String { "kick:\(p.streamId):\(p.userId):\(p.kind.rawValue)" }

    func run(_ job: Job, on db: any Database) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        switch p.action {
        case .create:
            guard let stream = try await LiveStream.find(p.streamId, on: db), let user = try await User.find(p.userId, on: db) else {
                return .skipped("stream or user gone")
            }
            var body: [String: Any] = ["appid": appID, "cname": stream.agoraChannelId, "uid": Int(user.agoraUid),
                                       "privileges": p.kind.privileges]
            // time_in_seconds is clamped by Agora to 10…86 430; a block without end lasts the stream (max).
            body["time_in_seconds"] = min(max(p.seconds ?? 86_430, 10), 86_430)
            let reply = try await call(.POST, body)
            guard let id = reply["id"] as? Int else { throw KickError.unexpected("no rule id") }
            try await KickingRule.query(on: db).filter(\.$streamID == p.streamId).filter(\.$userID == p.userId).filter(\.$kind == p.kind).delete()
            let rule = KickingRule()
            rule.streamID = p.streamId; rule.userID = p.userId; rule.kind = p.kind; rule.agoraRuleID = Int64(id)
            try await rule.create(on: db)
        case .delete:
            let rules = try await KickingRule.query(on: db).filter(\.$streamID == p.streamId).filter(\.$userID == p.userId).filter(\.$kind == p.kind).all()
            for rule in rules {
                _ = try await call(.DELETE, ["appid": appID, "id": Int(rule.agoraRuleID)])
                try await rule.delete(on: db)
            }
        }
        return .done
    }

    enum KickError: Error { case http(Int, String), unexpected(String) }

    private func call(_ method: HTTPMethod, _ body: [String: Any]) async throws -> [String: Any] {
        let (status, json) = try await settings.request(method, "/dev/v1/kicking-rule", body: body, client: client)
        guard status == .ok, json["status"] as? String == "success" else {
            throw KickError.http(Int(status.code), json["message"] as? String ?? "")
        }
        return json
    }
}
