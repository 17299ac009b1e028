import Foundation

/// Lets enqueuers in this process wake the worker loop before its next poll.
final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?

    func wake() {
        let c: CheckedContinuation<Void, Never>? = lock.withLock {
            if let w = waiter { waiter = nil; return w }
            pending = true
            return nil
        }
        c?.resume()
    }

    /// Returns when woken or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        if lock.withLock({ let p = pending; pending = false; return p }) { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { wake() }
            }
            group.addTask { [self] in
                await withCheckedContinuation { c in
                    let resumeNow: Bool = lock.withLock {
                        if pending { pending = false; return true }
                        waiter = c
                        return false
                    }
                    if resumeNow { c.resume() }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
