import Foundation

/// The one source of "now" for everything time-dependent, so tests can move time.
struct AppClock: Sendable {
    let now: @Sendable () -> Date

    static let system = AppClock { Date() }

    /// A clock that tests set and advance.
    static func manual(_ start: Date) -> (clock: AppClock, set: @Sendable (Date) -> Void) {
        let box = ManualTime(start)
        return (AppClock { box.get() }, { box.set($0) })
    }
}

private final class ManualTime: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Date
    init(_ value: Date) { self.value = value }
    func get() -> Date { lock.withLock { value } }
    func set(_ d: Date) { lock.withLock { value = d } }
}
