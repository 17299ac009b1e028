import NIOConcurrencyHelpers

/// A thread-safe memo with a size bound: when full it is emptied (entries still in use are worked
/// out again), which keeps memory bounded without bookkeeping per entry. For values that are
/// cheap to recompute now and then and costly to compute per email or per request.
final class BoundedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let entries = NIOLockedValueBox<[Key: Value]>([:])
    private let limit: Int

    init(limit: Int) { self.limit = max(1, limit) }

    func get(_ key: Key) -> Value? { entries.withLockedValue { $0[key] } }

    func remove(_ key: Key) { _ = entries.withLockedValue { $0.removeValue(forKey: key) } }

    func put(_ key: Key, _ value: Value) {
        entries.withLockedValue { e in
            if e.count >= limit { e.removeAll() }
            e[key] = value
        }
    }
}
