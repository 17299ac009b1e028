import FluentKit
import Foundation
import SQLKit
import Testing
@testable import App

/// The fan-out's page insert and the outcome group write, which PostgreSQL runs as statements of
/// fixed text over arrays and SQLite as portable SQL: the same rows either way (run on both databases).
@Suite struct DeliveryStatementTests {
    struct Stored: Decodable, Equatable {
        let recipient_id: String, status: String, attempts: Int, locked_by: String?, last_reply: String?
        let sent_at: Date?, provider_message_id: String?, locked_until: Date?
    }

    private func stored(_ stream: String, on sql: any SQLDatabase) async throws -> [String: Stored] {
        let rows = try await sql.raw("""
            SELECT recipient_id, status, attempts, locked_by, last_reply, sent_at, provider_message_id, locked_until
            FROM deliveries WHERE stream_id = \(bind: stream) AND kind = \(bind: NotificationKind.liveNow)
            """).all(decoding: Stored.self)
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.recipient_id, $0) })
    }

    @Test func aPageIsInsertedOnceLeasedOrQueuedWithItsSkipsAndOutcomesKeepTheFirstOfARow() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            _ = try await t.importUsers(["m3", "m4", "m5"].map { TestApp.user($0) })
            let stream = try await t.createStream()
            let sql = t.app.db.sql
            let now = t.start
            let lease = Lease<DeliveryStatus>(table: Delivery.schema, workerID: "w-1", duration: 60)
            let previous = now.addingTimeInterval(-3600)
            func page(_ kind: NotificationKind, lease: Lease<DeliveryStatus>?, _ members: [(String, String?)]) -> PageInsert {
                PageInsert(streamID: stream, kind: kind, revision: 2, previousStart: previous, now: now, lease: lease, members: members)
            }

            // Leased to this process: the rows come back (only those inserted), skips are `skipped` and not leased.
            let leased = try await page(.liveNow, lease: lease, [("m1", nil), ("m2", "recipient opted out"), ("m3", nil)]).run(on: sql, returning: true)
            #expect(Set(leased.map(\.recipient)) == ["m1", "m2", "m3"])
            #expect(Dictionary(uniqueKeysWithValues: leased.map { ($0.recipient, $0.status) }) == ["m1": .sending, "m2": .skipped, "m3": .sending])
            var rows = try await stored(stream, on: sql)
            #expect(rows["m1"]?.attempts == 1 && rows["m1"]?.locked_by == "w-1" && rows["m1"]?.last_reply == nil)
            #expect(rows["m1"].flatMap(\.locked_until).map { abs($0.timeIntervalSince(now.addingTimeInterval(60))) < 0.001 } == true)
            #expect(rows["m2"]?.status == "skipped" && rows["m2"]?.attempts == 0 && rows["m2"]?.locked_by == nil)
            #expect(rows["m2"]?.last_reply == "recipient opted out" && rows["m2"]?.locked_until == nil)

            // Again, with one new member: only the new one is inserted (the once key), and nothing else changes.
            let again = try await page(.liveNow, lease: lease, [("m1", nil), ("m4", nil)]).run(on: sql, returning: true)
            #expect(again.map(\.recipient) == ["m4"])

            // Queued for any worker (another kind): no lease, no attempt.
            let queued = try await page(.scheduled, lease: nil, [("m5", nil), ("m1", "suppressed")]).run(on: sql, returning: true)
            #expect(Dictionary(uniqueKeysWithValues: queued.map { ($0.recipient, $0.status) }) == ["m5": .queued, "m1": .skipped])
            struct K: Decodable { let kind: String, status: String, attempts: Int, locked_by: String?, revision: Int, previous_start_time: Date? }
            let m5 = try await sql.raw("SELECT kind, status, attempts, locked_by, revision, previous_start_time FROM deliveries WHERE recipient_id = 'm5'")
                .all(decoding: K.self)
            #expect(m5.count == 1 && m5.first?.status == "queued" && m5.first?.attempts == 0 && m5.first?.locked_by == nil)
            #expect(m5.first?.revision == 2 && m5.first?.kind == "scheduled" && m5.first?.previous_start_time == previous)

            // Outcomes: a row named twice keeps its first; a failure keeps a provider id set earlier and sets no sent_at.
            let ids = Dictionary(uniqueKeysWithValues: (leased + again).map { ($0.recipient, $0.id) })
            try await OutcomeLog(now: { now.addingTimeInterval(5) }).write([.init(id: ids["m3"]!, status: .sent, reply: "250 first", sentAt: now, providerID: "p-3")], on: sql)
            try await OutcomeLog(now: { now.addingTimeInterval(9) }).write([
                .init(id: ids["m1"]!, status: .sent, reply: "250 queued as A", sentAt: now, providerID: "p-1"),
                .init(id: ids["m1"]!, status: .failed, reply: "550 later", sentAt: nil),
                .init(id: ids["m3"]!, status: .failed, reply: "554 bounced", sentAt: nil),
                .init(id: ids["m4"]!, status: .sent, reply: String(repeating: "x", count: 600), sentAt: now),
            ], on: sql)
            rows = try await stored(stream, on: sql)
            let written = now.addingTimeInterval(9)
            #expect(rows["m1"]?.status == "sent" && rows["m1"]?.last_reply == "250 queued as A" && rows["m1"]?.provider_message_id == "p-1")
            #expect(rows["m1"]?.sent_at == written && rows["m1"]?.locked_by == nil && rows["m1"]?.locked_until == nil)
            #expect(rows["m3"]?.status == "failed" && rows["m3"]?.last_reply == "554 bounced" && rows["m3"]?.provider_message_id == "p-3")
            #expect(rows["m3"]?.sent_at == now.addingTimeInterval(5), "a failure keeps the sent_at of the earlier write")
            #expect(rows["m4"]?.last_reply?.count == 500 && rows["m4"]?.provider_message_id == nil)
            #expect(rows["m2"]?.status == "skipped", "a row not in the group is untouched")

            // A failure first and a success later in one group: the failure, whole (no sent_at, no provider id of
            // the later outcome); an empty provider id is none (the earlier one stays).
            try await OutcomeLog(now: { now.addingTimeInterval(12) }).write([
                .init(id: ids["m4"]!, status: .failed, reply: "551 no such user", sentAt: nil),
                .init(id: ids["m4"]!, status: .sent, reply: "250 later", sentAt: now, providerID: "p-4b"),
                .init(id: ids["m3"]!, status: .sent, reply: "250 again", sentAt: now, providerID: ""),
            ], on: sql)
            rows = try await stored(stream, on: sql)
            #expect(rows["m4"]?.status == "failed" && rows["m4"]?.last_reply == "551 no such user")
            #expect(rows["m4"]?.sent_at == written && rows["m4"]?.provider_message_id == nil)
            #expect(rows["m3"]?.status == "sent" && rows["m3"]?.provider_message_id == "p-3" && rows["m3"]?.sent_at == now.addingTimeInterval(12))
        }
    }
}
