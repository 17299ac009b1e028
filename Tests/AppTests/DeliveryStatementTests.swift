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

    private func ids(_ stream: String, on sql: any SQLDatabase) async throws -> [String: Int64] {
        struct Row: Decodable { let recipient_id: String, id: Int64 }
        let rows = try await sql.raw("SELECT recipient_id, id FROM deliveries WHERE stream_id = \(bind: stream) AND kind = 'live_now'")
            .all(decoding: Row.self)
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.recipient_id, $0.id) })
    }

    @Test func aPageIsInsertedOnceQueuedWithItsSkipsAndOutcomesKeepTheFirstOfARow() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            _ = try await t.importUsers(["m3", "m4", "m5"].map { TestApp.user($0) })
            let stream = try await t.createStream()
            let sql = t.app.db.sql
            let now = t.start
            let previous = now.addingTimeInterval(-3600)
            func page(_ kind: NotificationKind, _ members: [(String, String?)]) -> PageInsert {
                PageInsert(streamID: stream, kind: kind, revision: 2, previousStart: previous, now: now, members: members)
            }

            // Queued for any worker, no lease, no attempt; skips are `skipped` with their reason.
            try await page(.liveNow, [("m1", nil), ("m2", "recipient opted out"), ("m3", nil)]).run(on: sql)
            var rows = try await stored(stream, on: sql)
            #expect(rows["m1"]?.status == "queued" && rows["m1"]?.attempts == 0 && rows["m1"]?.locked_by == nil && rows["m1"]?.last_reply == nil)
            #expect(rows["m2"]?.status == "skipped" && rows["m2"]?.attempts == 0 && rows["m2"]?.locked_by == nil)
            #expect(rows["m2"]?.last_reply == "recipient opted out" && rows["m2"]?.locked_until == nil)

            // Again, with one new member: only the new one is inserted (the once key), and nothing else changes.
            try await page(.liveNow, [("m1", "suppressed"), ("m4", nil)]).run(on: sql)
            rows = try await stored(stream, on: sql)
            #expect(rows.count == 4 && rows["m1"]?.status == "queued" && rows["m4"]?.status == "queued")

            // Another kind: its own rows, with the page's revision and previous start time.
            try await page(.scheduled, [("m5", nil), ("m1", "suppressed")]).run(on: sql)
            struct K: Decodable { let kind: String, status: String, attempts: Int, locked_by: String?, revision: Int, previous_start_time: Date? }
            let m5 = try await sql.raw("SELECT kind, status, attempts, locked_by, revision, previous_start_time FROM deliveries WHERE recipient_id = 'm5'")
                .all(decoding: K.self)
            #expect(m5.count == 1 && m5.first?.status == "queued" && m5.first?.attempts == 0 && m5.first?.locked_by == nil)
            #expect(m5.first?.revision == 2 && m5.first?.kind == "scheduled" && m5.first?.previous_start_time == previous)

            // Outcomes: a row named twice keeps its first; a failure keeps a provider id set earlier and sets no sent_at.
            let ids = try await ids(stream, on: sql)
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

    /// Emails handed over by the fan-out have no row until their outcome: ids reserved first (never
    /// one a later ordinary insert takes), then one insert for the group, whatever each outcome is.
    @Test func handedOverEmailsAreInsertedWithTheirOutcomeUnderReservedIDs() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            _ = try await t.importUsers(["m3", "m4", "m5", "m6"].map { TestApp.user($0) })
            let stream = try await t.createStream()
            let sql = t.app.db.sql
            let now = t.start
            let previous = now.addingTimeInterval(-3600)
            try await PageInsert(streamID: stream, kind: .liveNow, revision: 2, previousStart: previous, now: now,
                                 members: [("m1", nil), ("m5", "recipient opted out")]).run(on: sql)
            let reserved = try await DeliveryIDs.reserve(5, on: t.app.db)
            #expect(reserved.count == 5 && Set(reserved).count == 5)
            // An ordinary insert after the reservation takes an id above it.
            try await PageInsert(streamID: stream, kind: .liveNow, revision: 2, previousStart: previous, now: now, members: [("m6", nil)]).run(on: sql)
            let m6 = try #require(try await ids(stream, on: sql)["m6"])
            #expect(reserved.allSatisfy { $0 < m6 })
            #expect(try await DeliveryIDs.reserve(2, on: t.app.db).allSatisfy { $0 > m6 })

            func recipient(_ id: Int64, _ member: String, previous: Date?) -> DeliverySender.Recipient {
                .init(id: id, kind: .liveNow, attempts: 1, stream_id: stream, recipient_id: member, recipient_name: member, recipient_email: "\(member)@example.com",
                      recipient_tz: nil, recipient_active: true, recipient_uid: 1, in_audience: 1, opted_out: 0, suppressed: 0, reminded_recently: 0,
                      revision: 2, previous_start_time: previous)
            }
            let retryAt = now.addingTimeInterval(300)
            try await OutcomeLog(now: { now.addingTimeInterval(7) }).write([
                .init(id: reserved[0], status: .sent, reply: "250 ok", sentAt: now, providerID: "p-2",
                      new: .init(recipient(reserved[0], "m2", previous: previous), attempts: 1, runAt: now)),
                .init(id: reserved[1], status: .queued, reply: "451 try later", sentAt: nil,
                      new: .init(recipient(reserved[1], "m3", previous: nil), attempts: 0, runAt: retryAt)),
                .init(id: reserved[2], status: .skipped, reply: "stream no longer live", sentAt: nil,
                      new: .init(recipient(reserved[2], "m4", previous: nil), attempts: 1, runAt: now)),
                // m1 has a queued row already (another run of the fan-out queued it): it takes this sent outcome, so
                // nobody sends it again; m5's skipped row is kept as it is.
                .init(id: reserved[3], status: .sent, reply: "250 again", sentAt: now,
                      new: .init(recipient(reserved[3], "m1", previous: nil), attempts: 1, runAt: now)),
                .init(id: reserved[4], status: .sent, reply: "250 m5", sentAt: now,
                      new: .init(recipient(reserved[4], "m5", previous: nil), attempts: 1, runAt: now)),
            ], on: sql)
            let rows = try await stored(stream, on: sql)
            let byID = try await ids(stream, on: sql)
            let written = now.addingTimeInterval(7)
            #expect(byID["m2"] == reserved[0] && byID["m3"] == reserved[1] && byID["m4"] == reserved[2] && byID["m1"] != reserved[3])
            #expect(rows["m2"]?.status == "sent" && rows["m2"]?.sent_at == written && rows["m2"]?.provider_message_id == "p-2" && rows["m2"]?.attempts == 1)
            #expect(rows["m3"]?.status == "queued" && rows["m3"]?.attempts == 0 && rows["m3"]?.sent_at == nil && rows["m3"]?.last_reply == "451 try later")
            #expect(rows["m4"]?.status == "skipped" && rows["m4"]?.provider_message_id == nil && rows["m4"]?.locked_by == nil)
            #expect(rows["m1"]?.status == "sent" && rows["m1"]?.last_reply == "250 again" && rows["m1"]?.attempts == 1 && rows["m1"]?.sent_at == written,
                    "a queued row there first takes the sent outcome")
            #expect(rows["m5"]?.status == "skipped" && rows["m5"]?.last_reply == "recipient opted out", "a finished row there first is kept")
            #expect(byID["m5"] != reserved[4])
            struct T: Decodable { let recipient_id: String, run_at: Date, previous_start_time: Date?, revision: Int, created_at: Date? }
            let times = try await sql.raw("SELECT recipient_id, run_at, previous_start_time, revision, created_at FROM deliveries WHERE stream_id = \(bind: stream)")
                .all(decoding: T.self)
            let t3 = times.first { $0.recipient_id == "m3" }, t2 = times.first { $0.recipient_id == "m2" }
            #expect(t3?.run_at == retryAt && t3?.previous_start_time == nil && t3?.revision == 2 && t3?.created_at == written)
            #expect(t2.flatMap(\.previous_start_time).map { abs($0.timeIntervalSince(previous)) < 0.001 } == true)
        }
    }
}
