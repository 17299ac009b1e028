import Foundation

/// Lets enqueuers in this process wake the worker loop before its next poll.
final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    /// Tells one wait from another (a counter: the worker waits once per pass).
    private var nextToken: UInt64 = 0

    func wake() {
        let woken: [CheckedContinuation<Void, Never>] = lock.withLock {
            if waiters.isEmpty { pending = true; return [] }
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        woken.forEach { $0.resume() }
    }

    /// Returns when woken, after `timeout`, or when the task is cancelled — whichever comes first.
    func wait(timeout: Duration) async {
        let token: UInt64 = lock.withLock { nextToken &+= 1; return nextToken }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = lock.withLock {
                    if pending || Task.isCancelled { pending = false; return true }
                    waiters[token] = c
                    return false
                }
                if resumeNow { c.resume(); return }
                Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    self?.resume(token)
                }
            }
        } onCancel: {
            resume(token)
        }
    }

    private func resume(_ token: UInt64) {
        lock.withLock { waiters.removeValue(forKey: token) }?.resume()
    }
}
