import Fluent
import Foundation

/// Stream changes as host-platform webhook events, in the transaction of the change, around the
/// notifications `inner` queues.
struct WebhookStreamEvents: StreamEvents {
    let inner: any StreamEvents
    let clock: AppClock

    func streamScheduled(_ stream: LiveStream, on db: any Database) async throws {
        try await inner.streamScheduled(stream, on: db)
        try await WebhookOutbox.stream(.streamScheduled, stream, now: clock.now(), on: db)
    }
    func streamWentLive(_ stream: LiveStream, on db: any Database) async throws {
        try await inner.streamWentLive(stream, on: db)
        try await WebhookOutbox.stream(.streamLive, stream, now: clock.now(), on: db)
    }
    func streamResumed(_ stream: LiveStream, on db: any Database) async throws {
        try await inner.streamResumed(stream, on: db)
    }
    func streamEnded(_ stream: LiveStream, on db: any Database) async throws {
        try await streamEnded(stream, reason: .creator, on: db)
    }
    func streamEnded(_ stream: LiveStream, reason: EndReason, on db: any Database) async throws {
        try await inner.streamEnded(stream, reason: reason, on: db)
        try await WebhookOutbox.stream(.streamEnded, stream, now: clock.now(), on: db, reason: reason.rawValue, viewers: stream.viewerCount)
    }
    func streamRescheduled(_ stream: LiveStream, from previous: Date, on db: any Database) async throws {
        try await inner.streamRescheduled(stream, from: previous, on: db)
        try await WebhookOutbox.stream(.streamRescheduled, stream, now: clock.now(), on: db, previousStart: previous)
    }
    func streamCancelled(_ stream: LiveStream, on db: any Database) async throws {
        try await inner.streamCancelled(stream, on: db)
        try await WebhookOutbox.stream(.streamCancelled, stream, now: clock.now(), on: db)
    }
}
