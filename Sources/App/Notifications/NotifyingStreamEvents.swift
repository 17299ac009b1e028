import Fluent
import Vapor

/// The live StreamEvents: stream changes queue their fan-outs in the same transaction.
struct NotifyingStreamEvents: StreamEvents {
    let queue: JobQueue
    let reminders: Reminders

    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .scheduled, revision: stream.scheduleRevision), again: false, queue: queue, on: db)
        try await reminders.schedule(stream, on: db)
    }

    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .rescheduled, revision: stream.scheduleRevision, previousStart: previous),
                                 again: false, queue: queue, on: db)
        try await reminders.schedule(stream, on: db)
    }

    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws {
        try await reminders.cancel(stream.id!, on: db)
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .cancelled, revision: stream.scheduleRevision), again: false, queue: queue, on: db)
    }

    /// Once per stream: going live again after a drop does not re-blast.
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .liveNow, revision: 0), again: false, queue: queue, on: db)
    }

    func streamEnded(_ stream: LiveStream, on db: any Database) async throws {
        try await reminders.cancel(stream.id!, on: db)
    }
}
