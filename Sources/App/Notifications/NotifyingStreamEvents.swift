import Fluent
import Vapor

/// The live StreamEvents: stream changes queue their fan-outs in the same transaction.
struct NotifyingStreamEvents: StreamEvents {
    let queue: JobQueue

    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .scheduled, revision: 0), again: false, queue: queue, on: db)
    }

    /// Once per stream: going live again after a drop does not re-blast.
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws {
        try await FanOut.enqueue(.init(streamId: stream.id!, kind: .liveNow, revision: 0), again: false, queue: queue, on: db)
    }

    func streamEnded(_ stream: LiveStream, on db: any Database) async throws {}
}
