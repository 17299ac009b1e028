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
}
