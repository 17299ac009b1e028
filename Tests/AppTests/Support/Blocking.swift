import Foundation

/// Blocking work (a child process's pipes, a synchronous fetch, a wait by sleeping) on a thread of
/// its own. Swift's cooperative pool has one thread per core — two on CI — and a test holding one
/// of them while it waits stalls every other test's tasks, and the fakes and receivers that run in
/// the test process, for as long as it waits.
enum Blocking {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }
}
