import FluentKit
import FluentSQL
import Foundation
import SQLKit

/// Where a stream is in its life. Stored as columns (`is_live`, `went_live_at`, `end_time`,
/// `cancelled_at`), read through this enum, and changed only by `StreamLifecycle`, each change one
/// conditional UPDATE whose WHERE is the `predicate` of the states it may leave:
///
/// | state       | meaning                                         | next states (by)                                                   |
/// |-------------|-------------------------------------------------|--------------------------------------------------------------------|
/// | `scheduled` | announced, not started                          | `live` (create with isScheduled:false, PATCH status isLive:true), `cancelled` (POST cancel, POST stop) |
/// | `live`      | on air                                          | `paused` (PATCH status isLive:false), `ended` (POST stop, host gone for HOST_GRACE_MINUTES, Agora channel destroyed) |
/// | `paused`    | went live, off air for now; never upcoming again | `live` (isLive:true: no second live-now email), `ended` (as from live) |
/// | `ended`     | over; no tokens                                  | — (stop again: 200 "already ended")                                |
/// | `cancelled` | called off before it went live                  | — (cancel again: 200 "already cancelled")                          |
///
/// Going live moves `startTime` to that moment and retires the reminder. Stopping a stream that
/// never went live cancels it (and tells those who got the scheduled email).
enum StreamState: String, Codable, Sendable, CaseIterable {
    case scheduled, live, paused, ended, cancelled

    /// The state a row's columns describe (the same rule as `predicate`, in Swift).
    init(isLive: Bool, wentLiveAt: Date?, endTime: Date?, cancelledAt: Date?) {
        if cancelledAt != nil { self = .cancelled } else if endTime != nil { self = .ended } else if isLive { self = .live }
        else { self = wentLiveAt == nil ? .scheduled : .paused }
    }

    /// The SQL condition (on the `streams` table) that holds exactly in this state.
    var predicate: SQLQueryString {
        switch self {
        case .scheduled: "(is_live = \(bind: false) AND went_live_at IS NULL AND end_time IS NULL AND cancelled_at IS NULL)"
        case .live: "(is_live = \(bind: true) AND end_time IS NULL AND cancelled_at IS NULL)"
        case .paused: "(is_live = \(bind: false) AND went_live_at IS NOT NULL AND end_time IS NULL AND cancelled_at IS NULL)"
        case .ended: "(end_time IS NOT NULL AND cancelled_at IS NULL)"
        case .cancelled: "(cancelled_at IS NOT NULL)"
        }
    }

    /// A row in any of `states`.
    static func any(of states: [StreamState]) -> SQLQueryString {
        var q: SQLQueryString = "("
        for (i, s) in states.enumerated() { q += i == 0 ? s.predicate : " OR " + s.predicate }
        return q + ")"
    }

    /// Started and not over: members may join (tokens), viewers are counted.
    var isOnAir: Bool { self == .live || self == .paused }
}

extension QueryBuilder where Model == LiveStream {
    /// Streams in any of `states`: the same predicate the lifecycle's conditional writes use.
    func filter(state states: StreamState...) -> Self { filter(.sql(StreamState.any(of: states))) }
}
