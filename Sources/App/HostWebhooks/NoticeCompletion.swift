import Fluent
import Foundation
import SQLKit

/// `notification.completed`: once a notice's fan-out has run and none of its deliveries is
/// queued or being sent, one event with the counts per outcome. A follow-up job per round
/// (every 30 s, for up to two hours) looks; the event's fixed id makes it once-only.
enum NoticeCompletion {
    struct Payload: Codable, Sendable {
        let streamId: String
        let kind: NotificationKind
        let revision: Int
        var round: Int
    }

    static let interval: TimeInterval = 30
    static let maxRounds = 240

    static func enqueue(_ p: Payload, queue: JobQueue, now: Date, on db: any Database) async throws {
        try await queue.enqueue(kind: .noticeCompletion, key: "notice_done:\(p.streamId):\(p.kind.rawValue):\(p.revision):\(p.round)", payload: p,
                                runAt: now.addingTimeInterval(p.round == 0 ? 5 : interval), maxAttempts: 5, replace: .never, on: db)
    }

    struct Counts: Encodable { var sent = 0, failed = 0, skipped = 0 }
    struct Data: Encodable {
        let streamId: String
        let kind: NotificationKind
        let revision: Int
        let counts: Counts
        let sequence: Int?
    }

    static func run(_ job: Job, queue: JobQueue, clock: AppClock, on db: any Database) async throws -> Worker.JobResult {
        var p = try job.decodePayload(Payload.self)
        struct Row: Decodable { let status: String; let n: Int }
        let rows = try await db.sql.raw("""
            SELECT status, COUNT(*) AS n FROM deliveries WHERE stream_id = \(bind: p.streamId) AND kind = \(bind: p.kind)
              AND revision = \(bind: p.revision) GROUP BY status
            """).all(decoding: Row.self)
        let by = Dictionary(rows.map { ($0.status, $0.n) }, uniquingKeysWith: +)
        if (by[DeliveryStatus.queued.rawValue] ?? 0) + (by[DeliveryStatus.sending.rawValue] ?? 0) > 0 {
            guard p.round < maxRounds else { return .skipped("deliveries still pending after \(maxRounds) rounds") }
            p.round += 1
            try await enqueue(p, queue: queue, now: clock.now(), on: db)
            return .done
        }
        let counts = Counts(sent: by[DeliveryStatus.sent.rawValue] ?? 0, failed: by[DeliveryStatus.failed.rawValue] ?? 0,
                            skipped: by[DeliveryStatus.skipped.rawValue] ?? 0)
        let done = p
        try await db.writeTransaction { tx in
            let p = done
            _ = try await WebhookOutbox.record(.notificationCompleted, stream: p.streamId, now: clock.now(), on: tx,
                                               messageID: "msg_notice_\(p.streamId)_\(p.kind.rawValue)_\(p.revision)") {
                Data(streamId: p.streamId, kind: p.kind, revision: p.revision, counts: counts, sequence: $0)
            }
        }
        return .done
    }
}
