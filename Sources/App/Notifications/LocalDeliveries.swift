import Fluent
import SQLKit
import Foundation
import NIOConcurrencyHelpers

/// Emails this process's fan-out hands straight to its own worker, before any delivery row exists:
/// the worker sends them from memory and the outcome is the row's one write (`OutcomeLog` inserts
/// it, sent, failed, skipped or queued for a retry). Per email the database sees one statement row,
/// not an insert, a claim and an update.
///
/// Durability is the fan-out job's: it holds its lease until every email it handed over has its row
/// (`Handover.settled`), so if the process dies the job's lease expires and any worker runs it
/// again; the re-run skips members who have a row, so what is re-sent is at most what was sent and
/// not yet recorded — the emails in flight. Nothing waiting here was sent. Bounded: while it is full
/// the fan-out waits a little, and queues its pages for any worker if room does not come (a slow or
/// paused relay, another replica idle).
final class LocalDeliveries: Sendable {
    let capacity: Int
    private let state = NIOLockedValueBox(State())
    /// False while the transport is paused (a refused key): then pages are queued for later.
    private let canSend: @Sendable () -> Bool

    private struct State {
        var rows: [DeliverySender.Row] = []
        var head = 0
        var closed = false
        var count: Int { rows.count - head }
    }

    init(capacity: Int, canSend: @escaping @Sendable () -> Bool = { true }) {
        self.capacity = max(1, capacity)
        self.canSend = canSend
    }

    var count: Int { state.withLockedValue { $0.count } }

    /// True once the worker is stopping.
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// One fan-out run's emails: how many are handed over and not yet recorded, and whether all were.
    final class Handover: Sendable {
        enum Outcome: Sendable, Equatable {
            /// Every email handed over has its row.
            case recorded
            /// Some were not sent or not recorded (the worker stopped, or a write failed): the job runs again.
            case unrecorded(stopping: Bool)
        }

        private struct State {
            var outstanding = 0
            var failed = false
            var abandoned = false
            var waiter: CheckedContinuation<Void, Never>?
        }

        private let state = NIOLockedValueBox(State())

        func handed(_ n: Int) { state.withLockedValue { $0.outstanding += n } }

        /// One email handed over is done: `recorded` when its row was written (nothing to write counts as
        /// written); `stopping` when it was never sent because the worker is stopping.
        func finished(recorded: Bool, stopping: Bool = false) {
            let waiter: CheckedContinuation<Void, Never>? = state.withLockedValue { s in
                s.outstanding -= 1
                if !recorded { s.failed = true }
                if stopping { s.abandoned = true }
                guard s.outstanding <= 0, let w = s.waiter else { return nil }
                s.waiter = nil
                return w
            }
            waiter?.resume()
        }

        /// Waits until every email handed over is done — or, with a `timeout`, at most that long (nil:
        /// not yet). One caller at a time.
        func settled(timeout: Duration? = nil) async -> Outcome? {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLockedValue { s in
                    if s.outstanding <= 0 { return true }
                    s.waiter = c
                    return false
                }
                if now { return c.resume() }
                guard let timeout else { return }
                // A timer left over from an earlier call may end a later wait early: the caller asks again.
                Task {
                    try? await Task.sleep(for: timeout)
                    let waiter: CheckedContinuation<Void, Never>? = self.state.withLockedValue { s in
                        defer { s.waiter = nil }
                        return s.waiter
                    }
                    waiter?.resume()
                }
            }
            return state.withLockedValue { s in
                guard s.outstanding <= 0 else { return nil }
                return s.failed || s.abandoned ? .unrecorded(stopping: s.abandoned) : .recorded
            }
        }
    }

    /// Waits until `n` more rows fit (true), or `timeout` passes, the transport is paused or the
    /// worker is stopping (false: queue the page in the database instead).
    func waitForRoom(_ n: Int, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let (fits, closed) = state.withLockedValue { ($0.count + n <= capacity, $0.closed) }
            if closed || !canSend() { return false }
            if fits { return true }
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Hands `rows` (each with its `handover`) to the worker; once the worker is stopping they are
    /// finished unsent at once.
    func add(_ rows: [DeliverySender.Row], for handover: Handover) {
        handover.handed(rows.count)
        let accepted = state.withLockedValue { s in
            guard !s.closed else { return false }
            s.rows.append(contentsOf: rows)
            return true
        }
        if !accepted { for _ in rows { handover.finished(recorded: false, stopping: true) } }
    }

    /// Takes back the rows of `handover` not yet taken by the worker (its fan-out lost its lease: another
    /// run of the job sends them); they count as done, not recorded.
    func withdraw(_ handover: Handover) {
        takeBack(stopping: false) { $0.handover === handover }
    }

    /// Up to `limit` rows, oldest first.
    func take(_ limit: Int) -> [DeliverySender.Row] {
        state.withLockedValue { s in
            let n = min(limit, s.count)
            guard n > 0 else { return [] }
            let taken = Array(s.rows[s.head..<(s.head + n)])
            s.head += n
            if s.head == s.rows.count || s.head > 4096 {
                s.rows.removeFirst(s.head)
                s.head = 0
            }
            return taken
        }
    }

    /// The worker is stopping: no new rows; the ones still waiting are finished unsent (their
    /// fan-out jobs go back to the queue once their emails in flight are recorded).
    func close() {
        takeBack(stopping: true) { _ in true }
    }

    /// Takes the waiting rows that `match` out of the queue and finishes them unsent (`stopping`: the
    /// worker is stopping, and the queue takes no more rows).
    private func takeBack(stopping: Bool, where match: (DeliverySender.Row) -> Bool) {
        let taken: [DeliverySender.Row] = state.withLockedValue { s in
            if stopping { s.closed = true }
            let waiting = s.rows[s.head...]
            s.rows = waiting.filter { !match($0) }
            s.head = 0
            return waiting.filter(match)
        }
        for row in taken { row.handover?.finished(recorded: false, stopping: stopping) }
    }
}

/// Delivery ids taken before their rows are written (an email names its delivery — Message-ID, the
/// provider's metadata — before the outcome inserts the row). PostgreSQL: the id column's sequence.
/// SQLite: the table is AUTOINCREMENT, so a new row's id is above `sqlite_sequence`'s number for it;
/// raising that number by `n` keeps the `n` ids below it for these rows (one write transaction, so
/// processes sharing the file never get the same ids).
enum DeliveryIDs {
    static func reserve(_ n: Int, on db: any Database) async throws -> [Int64] {
        guard n > 0 else { return [] }
        struct Row: Decodable { let id: Int64 }
        if db.sql.postgres != nil {
            return try await db.sql.raw("""
                SELECT nextval((SELECT pg_get_serial_sequence('deliveries', 'id'))) AS id FROM generate_series(1, \(bind: n))
                """).all(decoding: Row.self).map(\.id)
        }
        let last = try await db.writeTransaction { tx in
            let sql = tx.sql
            try await sql.raw("""
                INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries', COALESCE((SELECT MAX(id) FROM deliveries), 0)
                WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries')
                """).run()
            return try await sql.raw("UPDATE sqlite_sequence SET seq = seq + \(bind: n) WHERE name = 'deliveries' RETURNING seq AS id")
                .first(decoding: Row.self)?.id
        }
        guard let last else { throw ReservationFailed() }
        return Array((last - Int64(n) + 1)...last)
    }

    struct ReservationFailed: Error {}
}
