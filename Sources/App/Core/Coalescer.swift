import NIOConcurrencyHelpers

/// Group commit: callers submit one item each and wait; one batch runs at a time, and what arrives
/// while it runs becomes the next batch (up to `maxBatch`). An idle coalescer runs a lone item at
/// once, so it adds no wait when there is no load, and under load N items cost one round of work.
/// `run` answers every item of a batch, in order (a `Result` each, so one item can fail alone).
final class Coalescer<Input: Sendable, Output: Sendable>: Sendable {
    typealias Run = @Sendable ([Input]) async -> [Result<Output, any Error>]

    private struct Waiter {
        let input: Input
        let continuation: CheckedContinuation<Output, any Error>
    }
    private struct State {
        var waiting: [Waiter] = []
        var running = false
    }

    private let state = NIOLockedValueBox(State())
    private let maxBatch: Int
    private let run: Run

    init(maxBatch: Int, run: @escaping Run) {
        self.maxBatch = max(1, maxBatch)
        self.run = run
    }

    func submit(_ input: Input) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLockedValue { s -> Bool in
                s.waiting.append(Waiter(input: input, continuation: continuation))
                guard !s.running else { return false }
                s.running = true
                return true
            }
            if start { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLockedValue { s -> [Waiter] in
                let n = min(maxBatch, s.waiting.count)
                if n == 0 { s.running = false; return [] }
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
