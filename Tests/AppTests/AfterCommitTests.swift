import FluentKit
import Foundation
import NIOConcurrencyHelpers
import SQLKit
import Testing
@testable import App

/// A job queued inside a write transaction wakes the worker only once the transaction has committed
/// (woken before, the worker looked, found nothing and slept until its next poll); never when it rolls
/// back; at once outside a transaction.
@Suite struct AfterCommitTests {
    struct Payload: Codable, Sendable { let n: Int }
    struct Failure: Error {}

    @Test func aJobQueuedInATransactionWakesTheWorkerAfterTheCommitOnly() async throws {
        try await TestApp.run { t in
            let db = t.app.db
            // At each wake: can another connection see the job yet?
            let seen = NIOLockedValueBox<[Task<Int, any Error>]>([])
            let visible: @Sendable (String) -> Task<Int, any Error> = { key in
                Task {
                    struct N: Decodable { let n: Int }
                    return try await db.sql.raw("SELECT COUNT(*) AS n FROM jobs WHERE key = \(bind: key)").first(decoding: N.self)?.n ?? -1
                }
            }
            let key = NIOLockedValueBox("")
            let queue = JobQueue(clock: .system, wake: { seen.withLockedValue { $0.append(visible(key.withLockedValue { $0 })) } })
            let wakes: @Sendable () -> Int = { seen.withLockedValue { $0.count } }

            key.withLockedValue { $0 = "after-commit-1" }
            try await db.writeTransaction { tx in
                try await queue.enqueue(kind: .fanout, key: "after-commit-1", payload: Payload(n: 1), on: tx)
                #expect(wakes() == 0, "not woken while the transaction is open")
            }
            #expect(wakes() == 1)
            #expect(try await seen.withLockedValue { $0 }[0].value == 1, "the woken worker finds the job")

            await #expect(throws: Failure.self) {
                try await db.writeTransaction { tx in
                    try await queue.enqueue(kind: .fanout, key: "after-commit-2", payload: Payload(n: 2), on: tx)
                    throw Failure()
                }
            }
            #expect(wakes() == 1, "a rolled-back job wakes nobody")

            key.withLockedValue { $0 = "after-commit-3" }
            try await queue.enqueue(kind: .fanout, key: "after-commit-3", payload: Payload(n: 3), on: db)
            #expect(wakes() == 2, "outside a transaction: at once")
            #expect(try await seen.withLockedValue { $0 }[1].value == 1)
        }
    }

    /// A nested write transaction's job waits for the outer commit; a job queued on the database itself
    /// (not the transaction) from inside one commits on its own and wakes at once; an action asked for
    /// by a task that outlives its transaction runs at once, committed or rolled back.
    @Test func nestedOwnAndLateActionsFollowTheirOwnCommit() async throws {
        try await TestApp.run { t in
            let db = t.app.db
            let wakes = NIOLockedValueBox(0)
            let queue = JobQueue(clock: .system, wake: { wakes.withLockedValue { $0 += 1 } })
            let count: @Sendable () -> Int = { wakes.withLockedValue { $0 } }

            try await db.writeTransaction { tx in
                try await tx.writeTransaction { inner in
                    try await queue.enqueue(kind: .fanout, key: "nested", payload: Payload(n: 1), on: inner)
                }
                #expect(count() == 0, "the inner transaction is part of the outer one")
            }
            #expect(count() == 1)

            let late = NIOLockedValueBox<[Task<Void, Never>]>([])
            let ran = NIOLockedValueBox(0)
            let gate = AsyncStream<Void>.makeStream()
            try await db.writeTransaction { tx in
                late.withLockedValue { $0.append(Task { for await _ in gate.stream { break }; AfterCommit.run(after: tx) { ran.withLockedValue { $0 += 1 } } }) }
            }
            await #expect(throws: Failure.self) {
                try await db.writeTransaction { tx in
                    late.withLockedValue { $0.append(Task { for await _ in gate.stream { break }; AfterCommit.run(after: tx) { ran.withLockedValue { $0 += 1 } } }) }
                    throw Failure()
                }
            }
            gate.continuation.yield(); gate.continuation.yield(); gate.continuation.finish()
            for task in late.withLockedValue({ $0 }) { await task.value }
            #expect(ran.withLockedValue { $0 } == 2, "asked after its transaction ended: run at once")

            // Queued on `db` (its own autocommit), not on the transaction — PostgreSQL only: on SQLite the
            // open write transaction holds the one write lock, so another connection's insert would wait for it.
            guard TestApp.postgresURL != nil else { return }
            try await db.writeTransaction { _ in
                try await queue.enqueue(kind: .fanout, key: "own-commit", payload: Payload(n: 2), on: db)
                #expect(count() == 2, "a job committed on its own wakes at once")
            }
            #expect(count() == 2)
        }
    }
}
