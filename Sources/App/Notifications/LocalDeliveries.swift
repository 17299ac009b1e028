import Foundation
import NIOConcurrencyHelpers

/// Deliveries that this process's fan-out inserted already leased to its own worker, with
/// everything the sender needs (the page query's recipient columns): the worker sends them from
/// memory — no claim statement, no load query — and records each outcome as usual. Only the
/// insert and the outcome write touch the database per email.
///
/// Durability is the lease's: these rows are `sending` under this worker's lease (renewed while
/// they wait here), so if the process dies they expire and any worker claims them; nothing waiting
/// here was sent, so the crash bound stays "what was in flight". Bounded: while it is full the
/// fan-out waits a little, and queues its pages for any worker if room does not come (a slow or
/// paused relay, another replica idle).
final class LocalDeliveries: Sendable {
    let lease: Lease<DeliveryStatus>
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

    init(lease: Lease<DeliveryStatus>, capacity: Int, canSend: @escaping @Sendable () -> Bool = { true }) {
        self.lease = lease
        self.capacity = max(1, capacity)
        self.canSend = canSend
    }

    var count: Int { state.withLockedValue { $0.count } }

    /// Ids of the rows waiting here (their leases are renewed and, on shutdown, released with the worker's).
    var ids: [Int64] { state.withLockedValue { s in s.rows[s.head...].map(\.recipient.id) } }

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

    func add(_ rows: [DeliverySender.Row]) {
        state.withLockedValue { $0.rows.append(contentsOf: rows) }
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

    /// The worker is stopping: no new rows; returns the ids still waiting (to release).
    func close() -> [Int64] {
        state.withLockedValue { s in
            s.closed = true
            let left = s.rows[s.head...].map(\.recipient.id)
            s.rows = []
            s.head = 0
            return left
        }
    }
}
