import Fluent
import Foundation
import Logging
import SQLKit
import Vapor

/// Stops a stream's Agora Cloud Recording when the stream ends (live implementation: `Recordings`).
protocol StreamRecordings: Sendable {
    func stopActive(_ stream: LiveStream, on db: any Database) async throws
}

/// A new stream, validated by the caller.
struct StreamDraft: Sendable {
    var title: String
    var details: String?
    var workoutType: String?
    var thumbnail: String?
    /// nil: go live now.
    var scheduledStart: Date?
    var stagePolicy: StagePolicy = .hostOnly
    var capacity: Int? = nil
}

/// An edit of an upcoming stream; nil leaves a field as it is (`.some(nil)` clears it).
struct StreamEdits: Sendable {
    var title: String?
    var details: String??
    var workoutType: String??
    var thumbnail: String??
    var startTime: Date?
}

/// Why a stream ended (logged; the host platform's webhooks will carry it).
enum EndReason: String, Sendable {
    case creator, hostLeft = "host_left", channelDestroyed = "channel_destroyed"
}

/// The one place where streams are created and change state (the table is on `StreamState`).
/// The HTTP controllers, Agora's webhooks and the host-grace job all call it. Every transition is
/// one conditional UPDATE (`WHERE id = ? AND <state predicate>`, judged by the rows it returns),
/// in the same transaction as the notices it triggers, so concurrent calls cannot produce a state
/// the table does not have, nor two sets of emails.
struct StreamLifecycle: Sendable {
    let clock: AppClock
    let events: any StreamEvents
    let recordings: (any StreamRecordings)?
    let jobs: JobQueue
    /// HOST_GRACE_MINUTES: how long a live stream waits for its host to come back.
    let hostGrace: TimeInterval
    let logger: Logger

    // MARK: Finding streams

    static let notFound = APIError.notFound("stream_not_found", "Stream not found")

    func stream(_ id: String, on db: any Database) async throws -> LiveStream {
        guard !id.isEmpty, id.utf8.count <= 64, let stream = try await LiveStream.find(id, on: db) else { throw Self.notFound }
        return stream
    }

    /// The stream, if `callerID` is its creator and still an active creator (404 unknown stream,
    /// 403 someone else's, 403 `creator_inactive` for a deactivated or demoted creator).
    func ownedStream(_ id: String, by callerID: String, on db: any Database) async throws -> LiveStream {
        let stream = try await stream(id, on: db)
        guard stream.$creator.id == callerID else { throw APIError.forbidden("Only the stream's creator can do this") }
        _ = try await activeCreator(callerID, on: db)
        return stream
    }

    /// Only an active account with the creator role controls streams.
    func activeCreator(_ userID: String, on db: any Database) async throws -> User {
        guard let user = try await User.find(userID, on: db) else { throw APIError.notFound("user_not_found", "Creator not found") }
        guard user.isActiveCreator else {
            throw user.role == .creator ? APIError(.forbidden, "creator_inactive", "This creator account is inactive")
                : APIError(.forbidden, "not_a_creator", "Only creators can manage streams")
        }
        return user
    }

    // MARK: Transitions

    /// → scheduled (announced) or → live (going live now: the start is now, whatever was sent).
    func create(_ draft: StreamDraft, by creator: User, on db: any Database) async throws -> LiveStream {
        let now = clock.now()
        if let start = draft.scheduledStart, start <= now {
            throw APIError.validation("startTime of a scheduled stream must be in the future")
        }
        let stream = LiveStream()
        let id = LiveStream.newID()
        stream.id = id
        stream.agoraChannelId = id
        stream.title = draft.title
        stream.details = draft.details
        stream.workoutType = draft.workoutType
        stream.thumbnail = draft.thumbnail
        stream.startTime = draft.scheduledStart ?? now
        stream.isLive = draft.scheduledStart == nil
        stream.wentLiveAt = draft.scheduledStart == nil ? now : nil
        stream.viewerCount = 0
        stream.replayVerified = false
        stream.stagePolicy = draft.stagePolicy
        stream.capacity = draft.capacity
        stream.reminderSent = draft.scheduledStart == nil
        stream.scheduleRevision = 0
        stream.$creator.id = try creator.requireID()
        try await db.writeTransaction { tx in
            try await stream.create(on: tx)
            if stream.isLive { try await events.streamWentLive(stream, on: tx) } else { try await events.streamScheduled(stream, on: tx) }
        }
        return stream
    }

    enum LiveChange: Sendable, Equatable { case wentLive, resumed, paused, unchanged }

    /// PATCH status. `true`: scheduled → live (start moves to now, reminder retired, live-now
    /// emails) or paused → live (no second email). `false`: live → paused; a paused or scheduled
    /// stream stays as it is. Ended and cancelled streams refuse both (409).
    func setLive(_ live: Bool, _ stream: LiveStream, on db: any Database) async throws -> LiveChange {
        let id = try stream.requireID()
        return try await db.writeTransaction { tx in
            let now = clock.now()
            if live {
                if try await transition(id, from: [.scheduled], now: now, on: tx, {
                    $0.set("is_live", to: SQLBind(true)).set("went_live_at", to: SQLBind(now)).set("start_time", to: SQLBind(now))
                        .set("reminder_sent", to: SQLBind(true))
                }) {
                    try await events.streamWentLive(try await reload(id, on: tx), on: tx)
                    return .wentLive
                }
                if try await transition(id, from: [.paused], now: now, on: tx, { $0.set("is_live", to: SQLBind(true)) }) {
                    try await events.streamResumed(try await reload(id, on: tx), on: tx)
                    return .resumed
                }
            } else if try await transition(id, from: [.live], now: now, on: tx, { $0.set("is_live", to: SQLBind(false)) }) {
                return .paused
            }
            switch try await reload(id, on: tx).state {
            case .ended: throw Self.endedError
            case .cancelled: throw Self.cancelledError
            case .live, .paused, .scheduled: return .unchanged
            }
        }
    }

    enum StopOutcome: Sendable, Equatable { case ended, alreadyEnded, cancelled }

    /// POST stop: live/paused → ended (its recording stopped); scheduled → cancelled, as POST
    /// cancel would (those who got the scheduled email hear it is off); ended → nothing to do.
    func stop(_ stream: LiveStream, on db: any Database) async throws -> StopOutcome {
        let id = try stream.requireID()
        // States only move forward, except live ⇄ paused: a few rounds settle any race.
        for _ in 0..<4 {
            if try await end(id, reason: .creator, on: db) { return .ended }
            if try await cancelIfScheduled(id, on: db) { return .cancelled }
            switch try await reload(id, on: db).state {
            case .ended: return .alreadyEnded
            case .cancelled: throw Self.cancelledError
            case .scheduled, .live, .paused: continue
            }
        }
        throw Self.busyError
    }

    /// live/paused → ended, for every reason a stream ends (creator, host gone, channel destroyed).
    /// True if this call ended it. The cloud recording is stopped afterwards; a recording error
    /// never keeps a stream live.
    @discardableResult
    func end(_ id: String, reason: EndReason, on db: any Database) async throws -> Bool {
        let ended: LiveStream? = try await db.writeTransaction { tx in
            let now = clock.now()
            guard try await transition(id, from: [.live, .paused], now: now, on: tx, {
                $0.set("is_live", to: SQLBind(false)).set("end_time", to: SQLBind(now))
            }) else { return nil }
            let stream = try await reload(id, on: tx)
            try await events.streamEnded(stream, reason: reason, on: tx)
            try await tx.query(Job.self).filter(\.$key == Self.graceKey(id)).delete()
            return stream
        }
        guard let ended else { return false }
        logger.info("stream ended", metadata: ["stream": "\(id)", "reason": "\(reason.rawValue)"])
        if let recordings, ended.resourceId != nil {
            do { try await recordings.stopActive(ended, on: db) } catch {
                logger.warning("could not stop the cloud recording", metadata: ["stream": "\(id)", "error": "\(String(reflecting: type(of: error)))"])
            }
        }
        return true
    }

    enum CancelOutcome: Sendable, Equatable { case cancelled, alreadyCancelled }

    /// POST cancel: scheduled → cancelled (reminder dropped, cancellation emails with METHOD:CANCEL).
    func cancel(_ stream: LiveStream, on db: any Database) async throws -> CancelOutcome {
        let id = try stream.requireID()
        if try await cancelIfScheduled(id, on: db) { return .cancelled }
        let state = try await reload(id, on: db).state
        if state == .cancelled { return .alreadyCancelled }
        throw Self.notUpcoming(state, "cancelled")
    }

    private func cancelIfScheduled(_ id: String, on db: any Database) async throws -> Bool {
        try await db.writeTransaction { tx in
            guard try await transition(id, from: [.scheduled], now: clock.now(), on: tx, {
                $0.set("cancelled_at", to: SQLBind(clock.now())).set("schedule_revision", to: SQLQueryString("schedule_revision + 1"))
            }) else { return false }
            let cancelled = try await reload(id, on: tx)
            try await SeriesService.occurrenceCancelled(cancelled, on: tx)
            try await events.streamCancelled(cancelled, on: tx)
            return true
        }
    }

    /// PATCH: edits an upcoming stream. A new start time bumps the schedule revision, re-arms the
    /// reminder and queues one reschedule notice (coalesced with the edits that follow it).
    /// Optimistic: the write applies only to the revision it was computed from (every transaction
    /// starts with its write, so SQLite never has to upgrade a read snapshot).
    func edit(_ stream: LiveStream, _ edits: StreamEdits, on db: any Database) async throws -> (stream: LiveStream, rescheduled: Bool) {
        let id = try stream.requireID()
        if let start = edits.startTime, start <= clock.now() { throw APIError.validation("startTime must be in the future") }
        var current = stream
        for _ in 0..<4 {
            guard current.state == .scheduled else { throw Self.notUpcoming(current.state, "edited") }
            let previous = current.startTime, revision = current.scheduleRevision
            let moved = edits.startTime.flatMap { $0 == previous ? nil : $0 }
            let fresh: LiveStream? = try await db.writeTransaction { tx in
                let applied = try await transition(id, from: [.scheduled], now: clock.now(), on: tx,
                                                   also: "schedule_revision = \(bind: revision)") { update in
                    var u = update
                    if let title = edits.title { u = u.set("title", to: SQLBind(title)) }
                    if let details = edits.details { u = u.set("description", to: SQLBind(details)) }
                    if let workoutType = edits.workoutType { u = u.set("workout_type", to: SQLBind(workoutType)) }
                    if let thumbnail = edits.thumbnail { u = u.set("thumbnail", to: SQLBind(thumbnail)) }
                    if let moved {
                        u = u.set("start_time", to: SQLBind(moved)).set("reminder_sent", to: SQLBind(false))
                            .set("schedule_revision", to: SQLBind(revision + 1))
                    }
                    return u
                }
                guard applied else { return nil }
                let fresh = try await reload(id, on: tx)
                if moved != nil { try await events.streamRescheduled(fresh, from: previous, on: tx) }
                return fresh
            }
            if let fresh { return (fresh, moved != nil) }
            current = try await reload(id, on: db) // changed meanwhile: judge the new state
        }
        throw Self.busyError
    }

    /// Sets who may publish, while the stream has not ended (live streams too).
    func setStagePolicy(_ policy: StagePolicy, _ stream: LiveStream, on db: any Database) async throws {
        let id = try stream.requireID()
        guard try await transition(id, from: [.scheduled, .live, .paused], now: clock.now(), on: db, {
            $0.set("stage_policy", to: SQLBind(policy.rawValue))
        }) else {
            throw (try await reload(id, on: db)).isCancelled ? Self.cancelledError : Self.endedError
        }
        stream.stagePolicy = policy
    }

    /// Saves a replay URL (already validated) on a stream that was not cancelled. An unverified
    /// URL never replaces a verified replay (409 replay_verified).
    func setReplay(_ replay: Replay, _ stream: LiveStream, on db: any Database) async throws {
        let id = try stream.requireID()
        let keepsVerified: SQLQueryString? = replay.verified ? nil : "replay_verified = \(bind: false)"
        let saved = try await db.writeTransaction { tx in
            guard try await transition(id, from: [.scheduled, .live, .paused, .ended], now: clock.now(), on: tx, also: keepsVerified, {
                $0.set("replay_url", to: SQLBind(replay.url)).set("replay_verified", to: SQLBind(replay.verified))
            }) else { return false }
            // recording.ready in the same transaction as the replay it announces.
            stream.replayUrl = replay.url
            stream.replayVerified = replay.verified
            try await WebhookOutbox.recordingReady(stream, now: clock.now(), on: tx)
            return true
        }
        guard saved else {
            let current = try await reload(id, on: db)
            if current.isCancelled { throw Self.cancelledError }
            throw APIError(.conflict, "replay_verified", "This stream has a verified recording as its replay; an external URL cannot replace it")
        }
    }

    // MARK: The host's presence (Agora channel events)

    static func graceKey(_ streamID: String) -> String { "host_grace:\(streamID)" }
    struct GracePayload: Codable, Sendable { let streamId: String }

    /// The host left a live stream: it ends after the grace period unless they come back.
    func hostLeft(_ streamID: String, on db: any Database) async throws {
        try await jobs.enqueue(kind: .hostGrace, key: Self.graceKey(streamID), payload: GracePayload(streamId: streamID),
                               runAt: clock.now().addingTimeInterval(hostGrace), replace: .always, on: db)
    }

    func hostReturned(_ streamID: String, on db: any Database) async throws {
        try await db.query(Job.self).filter(\.$key == Self.graceKey(streamID)).delete()
    }

    /// The grace job: the host has not come back, so the stream ends exactly as a stop would.
    func graceExpired(_ job: Job, on db: any Database) async throws -> Worker.JobResult {
        let p = try job.decodePayload(GracePayload.self)
        return try await end(p.streamId, reason: .hostLeft, on: db) ? .done : .skipped("stream no longer live")
    }

    // MARK: Helpers

    static let cancelledError = APIError(.conflict, "stream_cancelled", "This stream was cancelled")
    static let endedError = APIError(.conflict, "stream_ended", "This stream has ended")

    /// A stream that is neither cancelled nor ended (409 stream_cancelled / stream_ended otherwise).
    func notOver(_ id: String, on db: any Database) async throws -> LiveStream {
        let stream = try await self.stream(id, on: db)
        if stream.isCancelled { throw Self.cancelledError }
        guard !stream.hasEnded else { throw Self.endedError }
        return stream
    }
    static let busyError = APIError(.conflict, "stream_busy", "The stream changed state during the request; try again")

    /// The 409 for a change only upcoming streams allow (`action`: "edited", "cancelled").
    private static func notUpcoming(_ state: StreamState, _ action: String) -> APIError {
        switch state {
        case .cancelled: cancelledError
        case .ended: APIError(.conflict, "stream_ended", "Only upcoming streams can be \(action)")
        case .live, .paused: APIError(.conflict, "stream_live", "Only upcoming streams can be \(action)")
        case .scheduled: busyError
        }
    }

    /// One conditional write: `set` applies only if the row is in one of `states` now.
    private func transition(_ id: String, from states: [StreamState], now: Date, on db: any Database,
                            also condition: SQLQueryString? = nil, _ set: (SQLUpdateBuilder) -> SQLUpdateBuilder) async throws -> Bool {
        struct Row: Decodable { let id: String }
        var update = set(db.sql.update(LiveStream.schema)).set("updated_at", to: SQLBind(now))
            .where("id", .equal, SQLBind(id)).where(StreamState.any(of: states))
        if let condition { update = update.where(condition) }
        let rows = try await update.returning("id").all(decoding: Row.self)
        return !rows.isEmpty
    }

    private func reload(_ id: String, on db: any Database) async throws -> LiveStream {
        guard let stream = try await LiveStream.find(id, on: db) else { throw Self.notFound }
        return stream
    }
}
