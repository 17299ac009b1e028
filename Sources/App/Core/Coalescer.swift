import NIOConcurrencyHelpers

/// Group commit: callers submit one item each and wait; up to `maxConcurrent` batches run at a time
/// (1: strictly one after another), and what arrives while they run becomes the next batch (up to
/// `maxBatch`). An idle coalescer runs a lone item at once, so it adds no wait when there is no
/// load, and under load N items cost one round of work.
/// `run` answers every item of a batch, in order (a `Result` each, so one item can fail alone).
final class Coalescer<Input: Sendable, Output: Sendable>: Sendable {
    typealias Run = @Sendable ([Input]) async -> [Result<Output, any Error>]

    private struct Waiter {
        let input: Input
        let continuation: CheckedContinuation<Output, any Error>
    }
    private struct State {
        var waiting: [Waiter] = []
        var running = 0
    }

    private let state = NIOLockedValueBox(State())
    private let maxBatch: Int
    private let maxConcurrent: Int
    private let run: Run

    init(maxBatch: Int, maxConcurrent: Int = 1, run: @escaping Run) {
        self.maxBatch = max(1, maxBatch)
        self.maxConcurrent = max(1, maxConcurrent)
        self.run = run
    }

    func submit(_ input: Input) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLockedValue { s -> Bool in
                s.waiting.append(Waiter(input: input, continuation: continuation))
                guard s.running < maxConcurrent else { return false }
                s.running += 1
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLockedValue { s -> [Waiter] in
                let n = min(maxBatch, s.waiting.count)
                if n == 0 { s.running -= 1; return [] }
                let taken = Array(s.waiting.prefix(n))
                s.waiting.removeFirst(n)
                return taken
            }
            if batch.isEmpty { return }
            let results = await run(batch.map(\.input))
            for (i, waiter) in batch.enumerated() {
                waiter.continuation.resume(with: i < results.count ? results[i] : .failure(CoalescerError.unanswered))
            }
        }
    }
}

enum CoalescerError: Error { case unanswered }
