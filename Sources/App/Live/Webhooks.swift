import Crypto
import Fluent
import Foundation
import SQLKit
import Vapor

/// Agora Notification Center (agora.md §8): signed, retried, possibly duplicated and out of order.
/// Verified on the raw bytes (HMAC-SHA256, `Agora-Signature-V2`), deduped by noticeId, and applied
/// per user only when its clientSeq is newer than what we have, so viewer counts stay exact.
struct WebhookController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.on(.POST, "webhooks", "agora", body: .collect(maxSize: "1mb"), use: receive)
    }

    static func signature(_ body: some DataProtocol, secret: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Array(body), using: SymmetricKey(data: Array(secret.utf8))).map { String(format: "%02x", $0) }.joined()
    }

    @Sendable func receive(req: Request) async throws -> Response {
        guard let secret = req.deps.config.ncsSecret else { throw APIError.featureDisabled("Agora webhooks (AGORA_NCS_SECRET)") }
        let raw = req.body.data.map { Array($0.readableBytesView) } ?? []
        guard let given = req.headers.first(name: "Agora-Signature-V2")?.lowercased(),
              SecretCompare.equal(given, Self.signature(raw, secret: secret)) else {
            throw APIError.unauthorized("Invalid webhook signature")
        }
        guard let json = try? JSONSerialization.jsonObject(with: Data(raw)) as? [String: Any], let notice = json["noticeId"] as? String,
              notice.utf8.count <= 128, let product = json["productId"] as? Int, let event = json["eventType"] as? Int else {
            throw APIError(.badRequest, "invalid_body", "Not an Agora notification")
        }
        let payload = json["payload"] as? [String: Any] ?? [:]
        let sql = req.db as! any SQLDatabase
        struct Row: Decodable { let notice_id: String }
        let fresh = try await sql.insert(into: "webhook_notices").columns("notice_id", "received_at")
            .values(SQLBind(notice), SQLBind(req.now)).ignoringConflicts(with: ["notice_id"]).returning("notice_id").all(decoding: Row.self)
        if fresh.isEmpty { return try await Ack(duplicate: true).encodeResponse(for: req) }
        do {
            switch product {
            case 1: try await ChannelEvents(deps: req.deps, db: req.db, req: req).apply(event: event, payload: payload)
            case 3: try await RecordingEvents.apply(event: event, payload: payload, req: req)
            default: break
            }
        } catch {
            // Not applied: forget the notice so Agora's retry is applied instead of acknowledged as a duplicate.
            try? await sql.delete(from: "webhook_notices").where("notice_id", .equal, SQLBind(notice)).run()
            throw error
        }
        return try await Ack(duplicate: false).encodeResponse(for: req)
    }

    struct Ack: Content { var success = true; let duplicate: Bool }
}

struct ChannelEvents {
    let deps: Dependencies
    let db: any Database
    let req: Request?

    static let graceJobKind = "host_grace"

    func apply(event: Int, payload: [String: Any]) async throws {
        guard let channel = payload["channelName"] as? String,
              let stream = try await LiveStream.query(on: db).filter(\.$agoraChannelId == channel).first() else { return } // unknown: ignore
        if event == 102 { try await Self.end(stream, deps: deps, db: db); return }
        let roles: [Int: String] = [103: "broadcaster", 104: "none", 105: "audience", 106: "none", 111: "broadcaster", 112: "audience"]
        guard let role = roles[event], let uid = (payload["uid"] as? NSNumber)?.int64Value,
              let seq = (payload["clientSeq"] as? NSNumber)?.int64Value else { return }
        // The Cloud Recording bot (Linux, clientType 10) is not a viewer.
        if payload["platform"] as? Int == 6, payload["clientType"] as? Int == 10 { return }
        let sql = db as! any SQLDatabase
        struct Row: Decodable { let uid: Int64 }
        let applied = try await sql.insert(into: "channel_members").columns("id", "stream_id", "uid", "role", "client_seq")
            .values(SQLBind(UUID()), SQLBind(stream.id!), SQLBind(uid), SQLBind(role), SQLBind(seq))
            .onConflict(with: ["stream_id", "uid"]) {
                $0.set(excludedValueOf: "role").set(excludedValueOf: "client_seq")
                    .where(SQLColumn("client_seq", table: "channel_members"), .lessThan, SQLExcludedColumn("client_seq"))
            }.returning("uid").all(decoding: Row.self)
        guard !applied.isEmpty else { return } // older than what we know: a late duplicate
        try await sql.raw("""
            UPDATE streams SET viewer_count = (SELECT COUNT(*) FROM channel_members m WHERE m.stream_id = \(bind: stream.id!) AND m.role = 'audience')
            WHERE id = \(bind: stream.id!)
            """).run()
        // The host: leaving starts the grace period; coming back cancels it.
        let creator = try await stream.$creator.get(on: db)
        guard creator.agoraUid == uid, stream.isLive else { return }
        let key = "host_grace:\(stream.id!)"
        if role == "none" {
            try await deps.jobs.enqueue(kind: Self.graceJobKind, key: key, payload: ["streamId": stream.id!],
                                        runAt: deps.clock.now().addingTimeInterval(deps.config.hostGrace), replace: .always, on: db)
        } else {
            try await Job.query(on: db).filter(\.$key == key).delete()
        }
    }

    /// The grace job: the host has not come back, so the stream ends exactly as a stop would.
    static func graceExpired(_ job: Job, deps: Dependencies, db: any Database) async throws -> Worker.JobResult {
        struct P: Decodable { let streamId: String }
        guard let stream = try await LiveStream.find(try job.decodePayload(P.self).streamId, on: db), stream.isLive else {
            return .skipped("stream no longer live")
        }
        try await end(stream, deps: deps, db: db)
        return .done
    }

    /// Ends the stream exactly as a stop would, its cloud recording included.
    static func end(_ stream: LiveStream, deps: Dependencies, db: any Database) async throws {
        guard stream.isLive else { return }
        if stream.resourceId != nil { try? await RecordingController.stopActiveRecording(stream, deps: deps, db: db) }
        stream.isLive = false
        stream.endTime = deps.clock.now()
        try await db.transaction { tx in
            try await stream.save(on: tx)
            try await deps.streamEvents.streamEnded(stream, on: tx)
        }
    }
}

enum RecordingEvents {
    /// 31 uploaded / 4 file infos → replayUrl; 11 session exit → the recording is over.
    static func apply(event: Int, payload: [String: Any], req: Request) async throws {
        guard let cname = payload["cname"] as? String,
              let stream = try await LiveStream.query(on: req.db).filter(\.$agoraChannelId == cname).first() else { return }
        let details = payload["details"] as? [String: Any] ?? [:]
        switch event {
        case 4, 31:
            let names = (details["fileList"] as? [[String: Any]])?.compactMap { ($0["fileName"] ?? $0["filename"]) as? String } ?? []
            if let store = req.deps.objectStore, let key = RecordingKeys.replayKey(streamID: stream.id!, files: names) {
                stream.replayUrl = store.replayURL(key: key)
                try await stream.save(on: req.db)
            }
        case 11:
            stream.resourceId = nil
            try await stream.save(on: req.db)
        default: break
        }
    }
}

struct CreateWebhookState: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("webhook_notices").field("notice_id", .string, .identifier(auto: false)).field("received_at", .datetime, .required).create()
        try await db.schema("channel_members").id()
            .field("stream_id", .string, .required, .references("streams", "id", onDelete: .cascade))
            .field("uid", .int64, .required).field("role", .string, .required).field("client_seq", .int64, .required)
            .unique(on: "stream_id", "uid", name: "channel_members_key").create()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("channel_members").delete()
        try await db.schema("webhook_notices").delete()
    }
}
