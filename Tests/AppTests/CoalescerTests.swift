import NIOConcurrencyHelpers
import Testing
@testable import App

/// Core/Coalescer: every caller gets its own answer; batches never run more at once than allowed;
/// under load, what arrives while a batch runs is grouped; one item's failure stays its own.
@Suite struct CoalescerTests {
    final class Probe: Sendable {
        let state = NIOLockedValueBox((running: 0, peak: 0, batches: [Int]()))
        func enter(_ n: Int) { state.withLockedValue { $0.running += 1; $0.peak = max($0.peak, $0.running); $0.batches.append(n) } }
        func leave() { state.withLockedValue { $0.running -= 1 } }
    }
    struct Odd: Error {}

    @Test(arguments: [1, 3]) func answersEachCallerAndBoundsConcurrency(maxConcurrent: Int) async throws {
        let probe = Probe()
        let coalescer = Coalescer<Int, Int>(maxBatch: 16, maxConcurrent: maxConcurrent) { inputs in
            probe.enter(inputs.count)
            try? await Task.sleep(for: .milliseconds(5))
            probe.leave()
            return inputs.map { $0 == 13 ? .failure(Odd()) : .success($0 * 2) }
        }
        let answers = await withTaskGroup(of: (Int, Int?).self) { group in
            for i in 0..<200 { group.addTask { (i, try? await coalescer.submit(i)) } }
            return await group.reduce(into: [Int: Int?]()) { $0[$1.0] = $1.1 }
        }
        #expect(answers.count == 200)
        #expect(answers.allSatisfy { i, v in i == 13 ? v == nil : v == i * 2 })
        let seen = probe.state.withLockedValue { $0 }
        #expect(seen.peak <= maxConcurrent && seen.batches.reduce(0, +) == 200 && seen.batches.allSatisfy { $0 <= 16 })
        #expect(seen.batches.count < 200, "200 callers at once are grouped: \(seen.batches.count) batches")
        // Idle again: a lone caller runs at once.
        #expect(try await coalescer.submit(21) == 42)
    }
}
