import Fluent
import Vapor

/// The live StreamEvents: stream changes queue their fan-outs (and move the reminder) in the same
/// transaction as the change.
struct NotifyingStreamEvents: StreamEvents {
    let queue: JobQueue
    let reminders: Reminders

    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .scheduled, revision: stream.scheduleRevision), again: false, queue: queue, on: db)
        try await reminders.schedule(stream, on: db)
    }

    /// Coalesced: edits in a row send one notice with the latest time.
    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws {
        try await FanOut.enqueueReschedule(streamID: stream.id!, revision: stream.scheduleRevision, previousStart: previous, queue: queue, on: db)
        try await reminders.schedule(stream, on: db)
    }

    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws {
        try await reminders.cancel(stream.id!, on: db)
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .cancelled, revision: stream.scheduleRevision), again: false, queue: queue, on: db)
    }

    /// The live-now notice (once per member per stream); the reminder is retired.
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws {
        try await reminders.cancel(stream.id!, on: db)
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .liveNow, revision: 0), again: false, queue: queue, on: db)
    }

    /// Whoever has not had the live-now email yet (the stream paused before its fan-out ran, or
    /// they joined the audience since) gets it now; nobody gets it twice (one delivery per member).
    func streamResumed(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .liveNow, revision: 0), again: true, queue: queue, on: db)
    }

    func streamEnded(_ stream: LiveStream, on db: any Database) async throws {
        try await reminders.cancel(stream.id!, on: db)
    }
}
