import Crypto
import Fluent
import Foundation
import SQLKit
import Vapor

/// Agora Notification Center (agora.md §8): signed, retried, possibly duplicated and out of order.
/// Verified on the raw bytes (HMAC-SHA256, `Agora-Signature-V2`), deduped by noticeId, and applied
/// per user only when its clientSeq is newer than what we have, so viewer counts stay exact.
struct WebhookController: RouteCollection {
    let ncsSecret: String?
    let channelEvents: ChannelEvents
    let recordingEvents: RecordingEvents
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        routes.on(.POST, "webhooks", "agora", body: .collect(maxSize: "1mb"), use: receive)
    }

    static func signature(_ body: some DataProtocol, secret: String) -> String {
        Hex.lower(HMAC<SHA256>.authenticationCode(for: Array(body), using: SymmetricKey(data: Array(secret.utf8))))
    }

    @Sendable func receive(req: Request) async throws -> Response {
        guard let secret = ncsSecret else { throw APIError.featureDisabled("Agora webhooks (AGORA_NCS_SECRET)") }
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
        // Viewers' joins, leaves and role changes: applied with whatever else arrives meanwhile.
        if AgoraProduct(rawValue: product) == .rtc, let type = ChannelEventType(rawValue: event),
           let fresh = try await channelEvents.submitViewerChange(notice: notice, type, payload: payload, on: req.db) {
            return try await Ack(duplicate: !fresh).encodeResponse(for: req)
        }
        let sql = req.db.sql
        struct Row: Decodable { let notice_id: String }
        let fresh = try await sql.insert(into: "webhook_notices").columns("notice_id", "received_at")
            .values(SQLBind(notice), SQLBind(clock.now())).ignoringConflicts(with: ["notice_id"]).returning("notice_id").all(decoding: Row.self)
        if fresh.isEmpty { return try await Ack(duplicate: true).encodeResponse(for: req) }
        do {
            switch AgoraProduct(rawValue: product) {
            case .rtc: if let type = ChannelEventType(rawValue: event) { try await channelEvents.apply(type, payload: payload, on: req.db) }
            case .cloudRecording: if let type = RecordingEventType(rawValue: event) { try await recordingEvents.apply(type, payload: payload, on: req.db) }
            case nil: break
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
