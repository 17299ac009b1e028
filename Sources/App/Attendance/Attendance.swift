import Fluent
import Foundation
import SQLKit

/// Who came to a class and for how long, from Agora's channel events (NCS 103–106, 111, 112).
/// Events arrive out of order and duplicated: each is kept once per (stream, uid, clientSeq) and
/// sessions are rebuilt in clientSeq order when asked. A join without a leave (a lost notice, a
/// destroyed channel) ends when the stream ended, or now while it is live.
enum Attendance {
    static let schema = "attendance_events"

    enum Event: String, Codable, Sendable { case join, leave, role }

    /// One membership event as stored.
    struct Record: Sendable {
        let stream: String, uid: Int64, type: ChannelEventType, role: ChannelRole, clientSeq: Int64, at: Date

        var event: Event {
            switch type {
            case .broadcasterJoined, .audienceJoined: .join
            case .broadcasterLeft, .audienceLeft: .leave
            default: .role
            }
        }
    }

    /// Records membership events in one statement (idempotent; the same event twice is kept once).
    static func record(_ records: [Record], on sql: any SQLDatabase) async throws {
        guard !records.isEmpty else { return }
        let rows: [SQLQueryString] = records.map { r in
            "(\(bind: RandomID.uuid()), \(bind: r.stream), \(bind: r.uid), (SELECT id FROM users WHERE agora_uid = \(bind: r.uid)), \(bind: r.event.rawValue), \(bind: r.role.rawValue), \(bind: r.clientSeq), \(bind: r.at))"
        }
        let query: SQLQueryString = "INSERT INTO attendance_events (id, stream_id, uid, user_id, event, role, client_seq, at) VALUES "
            + rows.joined(separator: ", ") + " ON CONFLICT (stream_id, uid, client_seq) DO NOTHING"
        try await sql.raw(query).run()
    }

    struct Row: Decodable, Sendable {
        let uid: Int64
        let user_id: String?
        let event: String
        let role: String
        let client_seq: Int64
        let at: Date
    }

    /// One person's time in the channel.
    struct Viewer: Sendable, Equatable {
        let uid: Int64
        let userID: String?
        var sessions: [ClosedRange<Date>] = []
        var onStage = false
        var firstJoinedAt: Date? { sessions.first?.lowerBound }
        var seconds: TimeInterval { sessions.reduce(0) { $0 + $1.upperBound.timeIntervalSince($1.lowerBound) } }
    }

    /// Sessions from one uid's events (any order in, clientSeq order applied); `end` closes an open one.
    static func viewer(uid: Int64, userID: String?, events: [Row], end: Date) -> Viewer {
        var v = Viewer(uid: uid, userID: userID)
        var openedAt: Date?
        for e in events.sorted(by: { $0.client_seq < $1.client_seq }) {
            if e.role == ChannelRole.broadcaster.rawValue { v.onStage = true }
            switch Event(rawValue: e.event) {
            case .join?: if openedAt == nil { openedAt = e.at }
            case .leave?:
                if let start = openedAt { v.sessions.append(start...max(start, e.at)); openedAt = nil }
            case .role?:
                // A role change while we have no join (the join's notice was lost): present since then.
                if openedAt == nil, e.role != ChannelRole.none.rawValue { openedAt = e.at }
            case nil: break
            }
        }
        if let start = openedAt { v.sessions.append(start...max(start, end)) }
        return v
    }

    /// Every viewer of a stream but its creator, from one index range scan of the stream's events.
    static func viewers(stream: LiveStream, creatorUID: Int64, now: Date, on sql: any SQLDatabase,
                        uids: SQLQueryString? = nil) async throws -> [Viewer] {
        let filter: SQLQueryString = uids.map { " AND uid IN (\($0))" } ?? ""
        let rows = try await sql.raw("""
            SELECT uid, user_id, event, role, client_seq, at FROM attendance_events
            WHERE stream_id = \(bind: stream.id!)\(filter) ORDER BY uid, client_seq
            """).all(decoding: Row.self)
        let end = stream.endTime ?? now
        var out: [Viewer] = []
        var i = rows.startIndex
        while i < rows.endIndex {
            let uid = rows[i].uid
            var j = i
            while j < rows.endIndex, rows[j].uid == uid { j += 1 }
            if uid != creatorUID {
                let userID = rows[i..<j].lazy.compactMap(\.user_id).first
                out.append(viewer(uid: uid, userID: userID, events: Array(rows[i..<j]), end: end))
            }
            i = j
        }
        return out
    }

    struct Analytics: Sendable, Equatable {
        struct Point: Sendable, Equatable { let minute: Date; let viewers: Int }
        var series: [Point]
        var peak: Int
        var average: Double
        var unique: Int
        var totalMinutes: Double
        var medianMinutes: Double
    }

    /// Concurrency per minute (the most viewers present at once within it), time-weighted average
    /// over the stream's span, unique viewers, total and median watch time.
    static func analytics(_ viewers: [Viewer], from start: Date, to end: Date) -> Analytics {
        let sessions = viewers.flatMap(\.sessions)
        let totals = viewers.map(\.seconds).filter { $0 > 0 }.sorted()
        let total = totals.reduce(0, +)
        let median: TimeInterval = totals.isEmpty ? 0
            : totals.count % 2 == 1 ? totals[totals.count / 2] : (totals[totals.count / 2 - 1] + totals[totals.count / 2]) / 2
        let first = sessions.map(\.lowerBound).min().map { min($0, start) } ?? start
        let last = max(end, sessions.map(\.upperBound).max() ?? end)
        // Sweep: +1 at each start, −1 at each end (ends first at equal times: back-to-back is not overlap).
        var marks = sessions.flatMap { [($0.lowerBound, 1), ($0.upperBound, -1)] }
        marks.sort { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
        let origin = floor(first.timeIntervalSince1970 / 60) * 60
        let minutes = max(1, Int(ceil((last.timeIntervalSince1970 - origin) / 60)))
        var peaks = Array(repeating: 0, count: minutes)
        var current = 0, k = 0
        for m in 0..<minutes {
            let bucketStart = origin + Double(m) * 60, bucketEnd = bucketStart + 60
            var best = current
            while k < marks.count, marks[k].0.timeIntervalSince1970 < bucketEnd {
                current += marks[k].1
                if marks[k].0.timeIntervalSince1970 >= bucketStart { best = max(best, current) }
                k += 1
            }
            peaks[m] = max(best, current)
        }
        let span = max(1, last.timeIntervalSince(first))
        return Analytics(
            series: peaks.enumerated().map { Analytics.Point(minute: Date(timeIntervalSince1970: origin + Double($0.offset) * 60), viewers: $0.element) },
            peak: peaks.max() ?? 0, average: total / span, unique: totals.count,
            totalMinutes: total / 60, medianMinutes: median / 60)
    }

    struct Conversion: Sendable, Equatable { let emailed: Int; let joined: Int }

    /// Of the members sent a notice of these kinds, how many first joined within `window` after it was sent.
    static func conversion(stream: String, kinds: [NotificationKind], viewers: [Viewer], window: TimeInterval = 1800,
                           on sql: any SQLDatabase) async throws -> Conversion {
        struct Sent: Decodable { let recipient_id: String; let sent_at: Date? }
        let rows = try await sql.raw("""
            SELECT recipient_id, MIN(sent_at) AS sent_at FROM deliveries WHERE stream_id = \(bind: stream)
              AND kind IN (\(SQLList(kinds.map { SQLBind($0) }))) AND status = \(bind: DeliveryStatus.sent) GROUP BY recipient_id
            """).all(decoding: Sent.self)
        var firstJoin: [String: [Date]] = [:]
        for v in viewers { if let id = v.userID { firstJoin[id, default: []] += v.sessions.map(\.lowerBound) } }
        let joined = rows.filter { r in
            guard let sent = r.sent_at else { return false }
            return firstJoin[r.recipient_id]?.contains { $0 >= sent && $0.timeIntervalSince(sent) <= window } ?? false
        }.count
        return Conversion(emailed: rows.count, joined: joined)
    }
}
