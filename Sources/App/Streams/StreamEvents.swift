import Fluent
import Vapor

/// What `StreamLifecycle` tells the rest of the system about a transition, inside the transaction
/// that makes it (so a notice is queued exactly when the change commits). Live implementation:
/// `NotifyingStreamEvents`; tests record or log.
protocol StreamEvents: Sendable {
    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws
    /// Back on air after a pause (not a second "live now" for those who had one).
    func streamResumed(_ stream: LiveStream, on db: any Database) async throws
    func streamEnded(_ stream: LiveStream, on db: any Database) async throws
    /// The same with why it ended (what the lifecycle calls; by default the one above).
    func streamEnded(_ stream: LiveStream, reason: EndReason, on db: any Database) async throws
    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws
    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws
}

extension StreamEvents {
    func streamEnded(_ stream: LiveStream, reason: EndReason, on db: any Database) async throws {
        try await streamEnded(stream, on: db)
    }
    func streamResumed(_ stream: LiveStream, on db: any Database) async throws {}
    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws {}
    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws {}
}

struct LoggingStreamEvents: StreamEvents {
    let logger: Logger
    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws {
        logger.info("stream scheduled", metadata: ["stream": "\(stream.id ?? "")"])
    }
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws {
        logger.info("stream live", metadata: ["stream": "\(stream.id ?? "")"])
    }
    func streamEnded(_ stream: LiveStream, on db: any Database) async throws {
        logger.info("stream ended", metadata: ["stream": "\(stream.id ?? "")"])
    }
}
