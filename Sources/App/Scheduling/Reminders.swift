import Fluent
import Foundation
import SQLKit
import Vapor

/// Reminder emails, REMINDER_LEAD_MINUTES before a scheduled start: one durable job per stream
/// (`reminder:{streamId}`), plus the cron entry points of the original design on top of the same
/// rule. Whoever gets there first flips `reminder_sent` in one conditional UPDATE and queues the
/// fan-out; everyone else finds it flipped. So a reminder goes out once, never before it is due.
struct Reminders: Sendable {
    static let jobKind = JobKind.reminder
    let lead: TimeInterval
    let queue: JobQueue
    let clock: AppClock
    let metrics: AppMetrics

    struct Payload: Codable, Sendable { let streamId: String }

    static func key(_ streamID: String) -> String { "reminder:\(streamID)" }

    /// After a stream is scheduled or rescheduled: (re)place its reminder job, or — when it starts
    /// within the lead time — mark the reminder as not needed (the scheduled email is enough).
    func schedule(_ stream: LiveStream, on db: any Database) async throws {
        let id = try stream.requireID()
        let due = stream.startTime.addingTimeInterval(-lead)
        if due <= clock.now() {
            try await cancel(id, on: db)
            try await db.sql.update(LiveStream.schema).set("reminder_sent", to: SQLBind(true))
                .where("id", .equal, SQLBind(id)).run()
            stream.reminderSent = true
        } else {
            try await queue.enqueue(kind: Self.jobKind, key: Self.key(id), payload: Payload(streamId: id), runAt: due,
                                    maxAttempts: 20, replace: .always, on: db)
        }
    }

    func cancel(_ streamID: String, on db: any Database) async throws {
        try await Job.query(on: db).filter(\.$key == Self.key(streamID)).delete()
    }

    enum Outcome: Equatable { case sent, alreadySent, notUpcoming, startPassed, notDueYet }

    /// The one rule every entry point applies.
    func trigger(_ streamID: String, on db: any Database) async throws -> Outcome {
        try await db.writeTransaction { tx in
            guard let stream = try await LiveStream.find(streamID, on: tx) else { return .notUpcoming }
            guard stream.isUpcoming else { return .notUpcoming }
            guard !stream.reminderSent else { return .alreadySent }
            let now = clock.now()
            guard stream.startTime > now else { return .startPassed }
            guard stream.startTime.addingTimeInterval(-lead) <= now else { return .notDueYet }
            struct Row: Decodable { let id: String }
            let flipped = try await tx.sql.update(LiveStream.schema)
                .set("reminder_sent", to: SQLBind(true))
                .where("id", .equal, SQLBind(streamID)).where("reminder_sent", .equal, SQLBind(false))
                .returning("id").all(decoding: Row.self)
            guard !flipped.isEmpty else { return .alreadySent }
            metrics.reminderLateness(seconds: now.timeIntervalSince(stream.startTime.addingTimeInterval(-lead)))
            try await FanOut.enqueue(.init(streamId: streamID, kind: .reminder, revision: stream.scheduleRevision), again: false, queue: queue, on: tx)
            return .sent
        }
    }

    /// The job handler: late runs (after downtime) still send if the stream has not started.
    func runJob(_ job: Job, on db: any Database) async throws -> Worker.JobResult {
        let p = try job.decodePayload(Payload.self)
        switch try await trigger(p.streamId, on: db) {
        case .sent, .alreadySent: return .done
        case .notUpcoming: return .skipped("stream is live, ended or cancelled")
        case .startPassed: return .skipped("stream start has passed")
        case .notDueYet: throw ReminderError.notDueYet // a clock skew between replicas: retry shortly
        }
    }

    enum ReminderError: Error { case notDueYet }

    /// The cron pass (original design's query, minus its early sends): upcoming streams whose
    /// reminder is due now and not yet sent.
    func runDue(on db: any Database) async throws -> [LiveStream] {
        let now = clock.now()
        let candidates = try await LiveStream.query(on: db)
            .filter(state: .scheduled).filter(\.$reminderSent == false)
            .filter(\.$startTime > now).filter(\.$startTime <= now.addingTimeInterval(lead))
            .sort(\.$startTime).limit(1000).all()
        var sent: [LiveStream] = []
        for stream in candidates where try await trigger(stream.id!, on: db) == .sent { sent.append(stream) }
        return sent
    }
}
