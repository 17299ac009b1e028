import Foundation
import NIOConcurrencyHelpers
import PostgresNIO
import SQLKit
import FluentSQLiteDriver

/// Writes delivery outcomes with group commit: every send still waits until its own outcome is in
/// the database (so a crash re-sends at most what was in flight), but the outcomes that arrive while
/// one write is running go together in the next, as one statement. One UPDATE per email was the
/// fan-out's per-email database round trip.
final class OutcomeLog: Sendable {
    struct Outcome: Sendable {
        let id: Int64
        let status: DeliveryStatus
        let reply: String
        let sentAt: Date?
        /// The provider's message id (HTTPS APIs), for matching its delivery events later.
        var providerID: String? = nil
        /// Set when the row is not in the database yet: the outcome inserts it (see `LocalDeliveries`).
        var new: NewRow? = nil
    }

    /// What a delivery row holds besides its outcome, for one the outcome inserts: its recipient's
    /// stream, kind, member, revision and previous start time, and these two.
    struct NewRow: Sendable {
        let r: DeliverySender.Recipient
        /// 1, or 0 for an attempt not counted (nothing was tried: the transport is paused).
        let attempts: Int
        /// When a queued row falls due (the time of the outcome for the others).
        let runAt: Date

        init(_ r: DeliverySender.Recipient, attempts: Int, runAt: Date) {
            self.r = r
            self.attempts = attempts
            self.runAt = runAt
        }
    }

    private typealias Waiter = (Outcome, CheckedContinuation<Void, any Error>)
    private struct State {
        var pending: [Waiter] = []
        var writing = false
    }

    private let state = NIOLockedValueBox(State())
    private let now: @Sendable () -> Date
    /// Rows per statement (3 binds each, well under SQLite's and PostgreSQL's bind limits).
    static let maxRows = 256

    init(now: @escaping @Sendable () -> Date) {
        self.now = now
    }

    /// Returns once `outcome` is written (or throws the write's error).
    func record(_ outcome: Outcome, on sql: any SQLDatabase) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let leader = state.withLockedValue { s in
                s.pending.append((outcome, c))
                if s.writing { return false }
                s.writing = true
                return true
            }
            if leader { Task { await self.writeAll(on: sql) } }
        }
    }

    /// A constraint broken by the statement (a foreign key: the member or stream is gone), not a failure
    /// of the database.
    static func isConstraintViolation(_ error: any Error) -> Bool {
        if let e = error as? SQLiteError {
            switch e.reason {
            case .constraint, .constraintForeignKeyFailed, .constraintNotNullFailed, .constraintPrimaryKeyFailed, .constraintUniqueFailed,
                 .constraintCheckFailed: return true
            default: return false
            }
        }
        if let e = error as? PSQLError, let state = e.serverInfo?[.sqlState] { return state.hasPrefix("23") }
        return false
    }

    private func writeAll(on sql: any SQLDatabase) async {
        while true {
            let batch: [Waiter] = state.withLockedValue { s in
                let taken = Array(s.pending.prefix(Self.maxRows))
                s.pending.removeFirst(taken.count)
                if taken.isEmpty { s.writing = false }
                return taken
            }
            if batch.isEmpty { return }
            do {
                try await write(batch.map(\.0), on: sql)
                for (_, c) in batch { c.resume() }
            } catch where batch.count > 1 && Self.isConstraintViolation(error) {
                // One row can fail a group (a member erased, or a stream deleted, while their email was
                // sent): each on its own, so only that one is unrecorded. (Any other failure — the database
                // unreachable or busy — fails the group as a whole, once.)
                for (outcome, c) in batch {
                    do {
                        try await write([outcome], on: sql)
                        c.resume()
                    } catch {
                        c.resume(throwing: error)
                    }
                }
            } catch {
                for (_, c) in batch { c.resume(throwing: error) }
            }
        }
    }

    /// One UPDATE for the whole batch. A row named twice in a group gets its first outcome (whole: status,
    /// reply, sent_at and provider id alike); the reply is kept to 500 characters and the provider id to 200
    /// (an empty one is none); `sent_at` is the time of this write (the relay accepted the email at most
    /// one group write earlier). PostgreSQL: `OutcomeStatement`, the group as arrays. SQLite:
    /// per-row values through CASE; a value every row shares (the status, usually) is one bind instead of a
    /// CASE — the statement is parsed for every group, so what is the same for all rows is written once.
    func write(_ group: [Outcome], on sql: any SQLDatabase) async throws {
        var seen = Set<Int64>()
        var outcomes: [Outcome] = [], fresh: [Outcome] = []
        for o in group where seen.insert(o.id).inserted {
            let cut = Outcome(id: o.id, status: o.status, reply: String(o.reply.prefix(500)), sentAt: o.sentAt,
                              providerID: o.providerID.flatMap { $0.isEmpty ? nil : String($0.prefix(200)) }, new: o.new)
            if cut.new == nil { outcomes.append(cut) } else { fresh.append(cut) }
        }
        let now = now()
        // Rows handed over by this process's fan-out are inserted with their outcome; the others updated.
        if !fresh.isEmpty { try await OutcomeInsert(fresh, now: now).run(on: sql) }
        guard let first = outcomes.first else { return }
        if let pg = sql.postgres {
            _ = try await pg.all(OutcomeStatement(outcomes, now: now), prepared: false, logger: sql.logger)
            return
        }
        func column<V: Encodable & Sendable & Equatable>(_ value: (Outcome) -> V) -> SQLQueryString {
            let shared = value(first)
            guard outcomes.contains(where: { value($0) != shared }) else { return "\(bind: shared)" }
            var q: SQLQueryString = "CASE id"
            for o in outcomes { q += " WHEN \(literal: o.id) THEN \(bind: value(o))" }
            return q + " END"
        }
        let sent = outcomes.filter { $0.sentAt != nil }
        let sentAt: SQLQueryString = sent.isEmpty ? "sent_at" : sent.count == outcomes.count ? "\(bind: now)"
            : "CASE WHEN id IN (\(SQLList(sent.map { SQLLiteral.numeric("\($0.id)") }))) THEN \(bind: now) ELSE sent_at END"
        var providerID: SQLQueryString = "CASE id"
        for o in outcomes { if let p = o.providerID { providerID += " WHEN \(literal: o.id) THEN \(bind: p)" } }
        providerID = outcomes.contains { $0.providerID != nil } ? providerID + " ELSE provider_message_id END" : "provider_message_id"
        let query: SQLQueryString = """
            UPDATE \(ident: Delivery.schema) SET status = \(column { $0.status }), last_reply = \(column { $0.reply }),
              sent_at = \(sentAt), provider_message_id = \(providerID), \(Lease<DeliveryStatus>.endingColumns), updated_at = \(bind: now)
            WHERE id IN (\(SQLList(outcomes.map { SQLLiteral.numeric("\($0.id)") })))
            """
        try await sql.raw(query).run()
    }
}

/// A group of outcomes on PostgreSQL: one statement text for every group size (the group as arrays),
/// short to parse; run unnamed, so it is planned for the table as it is (see `PostgresDatabase.all`).
/// The same effect as SQLite's statement; `OutcomeLog.write` passes each row once, its values already cut
/// to length (an empty provider id here: none).
struct OutcomeStatement: PostgresPreparedStatement {
    typealias Row = Void

    static let sql = """
        UPDATE deliveries AS d SET status = v.status, last_reply = v.reply,
          sent_at = CASE WHEN v.sent THEN $5::timestamptz ELSE d.sent_at END,
          provider_message_id = COALESCE(NULLIF(v.provider, ''), d.provider_message_id),
          locked_until = NULL, locked_by = NULL, updated_at = $5::timestamptz
        FROM unnest($1::int8[], $2::text[], $3::text[], $4::bool[], $6::text[]) AS v (id, status, reply, sent, provider)
        WHERE d.id = v.id
        """

    var ids: [Int64] = [], statuses: [String] = [], replies: [String] = [], sent: [Bool] = [], providers: [String] = []
    let now: Date

    init(_ outcomes: [OutcomeLog.Outcome], now: Date) {
        self.now = now
        for o in outcomes {
            ids.append(o.id); statuses.append(o.status.rawValue); replies.append(o.reply)
            sent.append(o.sentAt != nil); providers.append(o.providerID ?? "")
        }
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 6)
        b.append(ids); b.append(statuses); b.append(replies); b.append(sent); b.append(now); b.append(providers)
        return b
    }

    func decodeRow(_ row: PostgresRow) throws {}
}

/// Outcomes of rows not in the database yet (handed over by this process's fan-out): one INSERT for
/// the group. A row there already under the once key (another run of the fan-out got to this member:
/// possible only after this run lost its lease) is kept as it is — unless it is still `queued` and this
/// email was sent: then it takes this outcome, so nobody claims it and sends the email a second time.
/// `sent_at`, like the update's, is the time of this write. PostgreSQL: the group as arrays, one statement text for every size (a missing
/// previous start time travels as NaN); SQLite: one VALUES row per outcome.
struct OutcomeInsert: PostgresPreparedStatement {
    typealias Row = Void

    static let sql = """
        INSERT INTO deliveries (id, stream_id, kind, recipient_id, revision, previous_start_time, status, attempts, run_at,
          last_reply, sent_at, provider_message_id, created_at, updated_at)
        SELECT v.id, v.stream, v.kind, v.recipient, v.revision, CASE WHEN v.previous = 'NaN' THEN NULL ELSE to_timestamp(v.previous) END,
          v.status, v.attempts, v.run_at, v.reply, CASE WHEN v.sent THEN $1::timestamptz END, NULLIF(v.provider, ''),
          $1::timestamptz, $1::timestamptz
        FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::float8[], $8::text[], $9::int8[],
                    $10::timestamptz[], $11::text[], $12::bool[], $13::text[])
          AS v (id, stream, kind, recipient, revision, previous, status, attempts, run_at, reply, sent, provider)
        \(OutcomeInsert.onConflict)
        """

    static let onConflict = """
        ON CONFLICT (stream_id, kind, recipient_id, revision) DO UPDATE SET status = excluded.status, last_reply = excluded.last_reply,
          sent_at = excluded.sent_at, provider_message_id = excluded.provider_message_id, attempts = deliveries.attempts + excluded.attempts,
          locked_by = NULL, locked_until = NULL, updated_at = excluded.updated_at
        WHERE deliveries.status = 'queued' AND excluded.status = 'sent'
        """

    let outcomes: [OutcomeLog.Outcome]
    let now: Date

    init(_ outcomes: [OutcomeLog.Outcome], now: Date) {
        self.outcomes = outcomes.filter { $0.new != nil }
        self.now = now
    }

    func run(on sql: any SQLDatabase) async throws {
        guard !outcomes.isEmpty else { return }
        if let pg = sql.postgres {
            _ = try await pg.all(self, prepared: true, logger: sql.logger)
            return
        }
        var values: SQLQueryString = ""
        for (i, o) in outcomes.enumerated() {
            let n = o.new!
            let previous: SQLQueryString = n.r.previous_start_time.map { "\(bind: $0)" } ?? "NULL"
            let sentAt: SQLQueryString = o.sentAt == nil ? "NULL" : "\(bind: now)"
            let provider: SQLQueryString = o.providerID.map { "\(bind: $0)" } ?? "NULL"
            let row: SQLQueryString = """
                (\(literal: o.id), \(bind: n.r.stream_id), \(bind: n.r.kind), \(bind: n.r.recipient_id), \(literal: n.r.revision), \(previous), \
                \(bind: o.status), \(literal: n.attempts), \(bind: n.runAt), \(bind: o.reply), \(sentAt), \(provider))
                """
            values += i == 0 ? row : ", " + row
        }
        try await sql.raw("""
            INSERT INTO \(ident: Delivery.schema) (id, stream_id, kind, recipient_id, revision, previous_start_time, status, attempts, run_at,
              last_reply, sent_at, provider_message_id, created_at, updated_at)
            SELECT v.*, \(bind: now), \(bind: now) FROM (VALUES \(values)) AS v WHERE true
            \(unsafeRaw: Self.onConflict)
            """).run()
    }

    func makeBindings() throws -> PostgresBindings {
        var b = PostgresBindings(capacity: 13)
        b.append(now)
        b.append(outcomes.map(\.id)); b.append(outcomes.map { $0.new!.r.stream_id }); b.append(outcomes.map { $0.new!.r.kind.rawValue })
        b.append(outcomes.map { $0.new!.r.recipient_id }); b.append(outcomes.map { Int64($0.new!.r.revision) })
        b.append(outcomes.map { $0.new!.r.previous_start_time?.timeIntervalSince1970 ?? .nan }); b.append(outcomes.map(\.status.rawValue))
        b.append(outcomes.map { Int64($0.new!.attempts) }); b.append(outcomes.map { $0.new!.runAt }); b.append(outcomes.map(\.reply))
        b.append(outcomes.map { $0.sentAt != nil }); b.append(outcomes.map { $0.providerID ?? "" })
        return b
    }

    func decodeRow(_ row: PostgresRow) throws {}
}
