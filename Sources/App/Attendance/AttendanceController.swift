import Fluent
import SQLKit
import Vapor

/// GET /api/creator/streams/:id/attendance and …/analytics (the creator's), GET /api/me/history.
struct AttendanceController: RouteCollection {
    let lifecycle: StreamLifecycle
    let clock: AppClock

    func boot(routes: any RoutesBuilder) throws {
        routes.get("creator", "streams", ":streamId", "attendance", use: attendance)
        routes.get("creator", "streams", ":streamId", "analytics", use: analytics)
        routes.get("me", "history", use: history)
    }

    struct Attendee: Content {
        @NullEncodable var userId: String?
        @NullEncodable var name: String?
        let firstJoinedAt: Date
        let minutesWatched: Double
        let onStage: Bool
    }
    struct AttendanceBody: Content { var success = true; let attendees: [Attendee]; @NullEncodable var nextCursor: String? }

    private static func limit(_ req: Request, default fallback: Int, max: Int) throws -> Int {
        guard let raw = req.query[String.self, at: "limit"] else { return fallback }
        guard let n = Int(raw), (1...max).contains(n) else { throw APIError.validation("limit must be an integer from 1 to \(max)") }
        return n
    }

    private static func minutes(_ seconds: TimeInterval) -> Double { (seconds / 6).rounded() / 10 }

    private func owned(_ req: Request) async throws -> (LiveStream, Int64) {
        let stream = try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
        let creator = try await stream.$creator.get(on: req.db)
        return (stream, creator.agoraUid)
    }

    /// Attendees in uid order, a page at a time (the page's uids, then only their events).
    @Sendable func attendance(req: Request) async throws -> AttendanceBody {
        let (stream, creatorUID) = try await owned(req)
        let limit = try Self.limit(req, default: 100, max: 500)
        var after: Int64 = -1
        if let cursor = req.query[String.self, at: "cursor"] {
            guard let n = Int64(cursor), n >= 0 else { throw APIError.validation("Invalid cursor") }
            after = n
        }
        let sql = req.db.sql
        let page: SQLQueryString = """
            SELECT uid FROM (SELECT DISTINCT uid FROM attendance_events WHERE stream_id = \(bind: stream.id!) AND uid > \(bind: after)
                             AND uid <> \(bind: creatorUID) ORDER BY uid LIMIT \(literal: limit + 1)) p ORDER BY uid
            """
        struct U: Decodable { let uid: Int64 }
        let uids = try await sql.raw(page).all(decoding: U.self).map(\.uid)
        guard !uids.isEmpty else { return AttendanceBody(attendees: [], nextCursor: nil) }
        let shown = Array(uids.prefix(limit))
        let viewers = try await Attendance.viewers(stream: stream, creatorUID: creatorUID, now: clock.now(), on: sql,
                                                   uids: "\(SQLList(shown.map { SQLBind($0) }))")
        let names = try await User.query(on: req.db).filter(\.$id ~~ viewers.compactMap(\.userID)).all()
        let nameOf = Dictionary(names.map { ($0.id!, $0.name) }, uniquingKeysWith: { a, _ in a })
        let attendees = viewers.compactMap { v -> Attendee? in
            guard let first = v.firstJoinedAt else { return nil }
            return Attendee(userId: v.userID, name: v.userID.flatMap { nameOf[$0] }, firstJoinedAt: first,
                            minutesWatched: Self.minutes(v.seconds), onStage: v.onStage)
        }
        return AttendanceBody(attendees: attendees, nextCursor: uids.count > limit ? String(shown.last!) : nil)
    }

    struct AnalyticsBody: Content {
        struct Point: Content { let minute: Date; let viewers: Int }
        struct Funnel: Content { let emailed: Int; let joinedWithin30Minutes: Int }
        var success = true
        let peakViewers: Int
        let averageViewers: Double
        let uniqueViewers: Int
        let totalWatchMinutes: Double
        let medianWatchMinutes: Double
        let viewersPerMinute: [Point]
        let conversion: [String: Funnel]
    }

    @Sendable func analytics(req: Request) async throws -> AnalyticsBody {
        let (stream, creatorUID) = try await owned(req)
        let now = clock.now()
        let sql = req.db.sql
        let viewers = try await Attendance.viewers(stream: stream, creatorUID: creatorUID, now: now, on: sql)
        let a = Attendance.analytics(viewers, from: stream.wentLiveAt ?? stream.startTime, to: stream.endTime ?? now)
        let reminder = try await Attendance.conversion(stream: stream.id!, kinds: NotificationKind.reminders, viewers: viewers, on: sql)
        let live = try await Attendance.conversion(stream: stream.id!, kinds: [.liveNow], viewers: viewers, on: sql)
        return AnalyticsBody(
            peakViewers: a.peak, averageViewers: (a.average * 100).rounded() / 100, uniqueViewers: a.unique,
            totalWatchMinutes: Self.minutes(a.totalMinutes * 60), medianWatchMinutes: Self.minutes(a.medianMinutes * 60),
            viewersPerMinute: a.series.map { .init(minute: $0.minute, viewers: $0.viewers) },
            conversion: ["reminder": .init(emailed: reminder.emailed, joinedWithin30Minutes: reminder.joined),
                         "live_now": .init(emailed: live.emailed, joinedWithin30Minutes: live.joined)])
    }

    struct HistoryItem: Content {
        let streamId: String
        let title: String
        let creator: StreamDetails.Creator
        let state: StreamState
        @NullEncodable var replayUrl: String?
        let firstJoinedAt: Date
        let minutesWatched: Double
    }
    struct HistoryBody: Content { var success = true; let classes: [HistoryItem]; @NullEncodable var nextCursor: String? }

    /// The classes the caller attended, most recent first (for "continue watching" and replays).
    @Sendable func history(req: Request) async throws -> HistoryBody {
        let caller = try req.caller.id
        let limit = try Self.limit(req, default: 20, max: 100)
        var before: SQLQueryString = ""
        if let cursor = req.query[String.self, at: "cursor"] {
            guard let date = ISO8601.parse(cursor) else { throw APIError.validation("Invalid cursor") }
            before = " HAVING MIN(at) < \(bind: date)"
        }
        struct Row: Decodable { let stream_id: String; let first_at: Date }
        let sql = req.db.sql
        let rows = try await sql.raw("""
            SELECT stream_id, MIN(at) AS first_at FROM attendance_events WHERE user_id = \(bind: caller)
            GROUP BY stream_id\(before) ORDER BY first_at DESC LIMIT \(literal: limit + 1)
            """).all(decoding: Row.self)
        let shown = Array(rows.prefix(limit))
        let streams = try await LiveStream.query(on: req.db).filter(\.$id ~~ shown.map(\.stream_id)).with(\.$creator).all()
        let byID = Dictionary(streams.map { ($0.id!, $0) }, uniquingKeysWith: { a, _ in a })
        var items: [HistoryItem] = []
        for r in shown {
            guard let s = byID[r.stream_id] else { continue }
            let me = try await Attendance.viewers(stream: s, creatorUID: -1, now: clock.now(), on: sql,
                                                  uids: "SELECT agora_uid FROM users WHERE id = \(bind: caller)")
            items.append(HistoryItem(streamId: s.id!, title: s.title, creator: .init(id: s.creator.id!, name: s.creator.name), state: s.state,
                                     replayUrl: s.replayUrl, firstJoinedAt: r.first_at, minutesWatched: Self.minutes(me.first?.seconds ?? 0)))
        }
        return HistoryBody(classes: items, nextCursor: rows.count > limit ? shown.last.map { ISO8601.string($0.first_at) } : nil)
    }
}
