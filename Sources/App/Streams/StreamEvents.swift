import Fluent
import Vapor

/// The hook where notifications and reminders attach: called after a stream change is committed.
/// The notification pipeline (emails, reminder jobs) will provide the real implementation;
/// until then the server only logs the event.
protocol StreamEvents: Sendable {
    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws
    func streamEnded(_ stream: LiveStream, on db: any Database) async throws
    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws
    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws
}

extension StreamEvents {
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
