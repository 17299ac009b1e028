import Fluent
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Two `App serve` processes on one PostgreSQL, each running its worker, while both cron
/// endpoints are hammered: 12 streams whose reminders fall due within a minute.
@Suite(.enabled(if: TestApp.postgresURL != nil && MailPeers.available && ProcessInfo.processInfo.environment["APP_BINARY"] != nil,
                "PostgreSQL scale-out: needs TEST_DATABASE_URL, APP_BINARY and the SMTP peers (scripts/test)"))
struct ScaleOutTests {
    static let cronSecret = "scale-out-cron-secret-0123"

    static func startServer(_ config: AppConfig, port: Int) throws -> Process {
        try AppProcess.serve(port: port, environment: try AppProcess.environment(
            database: config.database, extra: ["CRON_SECRET": cronSecret, "REMINDER_LEAD_MINUTES": "1"]))
    }

    /// The status a cron endpoint answered, or nil when it gave no answer within 30 s (a loaded
    /// machine; counted, not failed: only what the endpoints answer is the product's).
    static func cron(port: Int, get: Bool) async -> Int? {
        await AppProcess.request(get ? "GET" : "POST", port: port, "api/cron/\(get ? "check-stream-reminders" : "trigger-stream-emails")",
                                 bearer: cronSecret, timeout: 30)?.status
    }

    @Test func everyReminderExactlyOnceNeverEarly() async throws {
        let run = UUID().uuidString.prefix(8).lowercased()
        let members = (0..<5).map { "sm\($0)" }
        let ports = [Int.random(in: 20_000...24_999), Int.random(in: 25_000...29_999)]
        try await TestApp.run(realClock: true, adjust: { $0.reminderLead = 60 }) { t in
            try await t.importUsers([TestApp.user("creator", role: "creator", timezone: "America/Chicago")]
                + members.map { ["id": $0, "name": "Member \($0)", "email": "\($0)-\(run)@example.com", "timezone": "Asia/Tokyo"] },
                follows: members.map { ["followerId": $0, "followedId": "creator"] })
            let base = Date()
            var due: [String: Date] = [:]
            for i in 0..<12 {
                let start = base.addingTimeInterval(66 + Double(i) * 4.5) // reminders due 6…56 s from now
                due[try await t.createStream(start: start, title: "Scale \(i)")] = start.addingTimeInterval(-60)
            }
            let servers = try ports.map { try Self.startServer(t.app.deps.config, port: $0) }
            defer { servers.forEach { if $0.isRunning { kill($0.processIdentifier, SIGKILL) } } }

            let sql = t.app.db as! any SQLDatabase
            struct Row: Decodable { let stream_id: String; let status: DeliveryStatus; let created_at: Date; let sent_at: Date? }
            func reminders() async throws -> [Row] {
                try await sql.raw("SELECT stream_id, status, created_at, sent_at FROM deliveries WHERE kind = 'reminder'").all(decoding: Row.self)
            }
            for port in ports { #expect(await AppProcess.waitForHealth(port: port, timeout: 180), "server on \(port) did not start") }
            // Both cron endpoints on both servers, until every reminder is sent and each server has
            // answered at least `minimumAnswers` calls (however slow the machine, the loop keeps
            // calling rather than judging the endpoints by how many calls fit in the time).
            let minimumAnswers = 5
            var cronCalls = 0, unanswered = 0, busy = 0, answered: [Int: Int] = [:], errors: [Int: Int] = [:] // port → 200s; status → count
            let deadline = Date().addingTimeInterval(240)
            while Date() < deadline {
                for (i, port) in ports.enumerated() {
                    cronCalls += 1
                    switch await Self.cron(port: port, get: (cronCalls + i) % 2 == 0) {
                    case 200?: answered[port, default: 0] += 1
                    case 503?: busy += 1 // the database pool's own limit on a loaded machine: a clean refusal, counted
                    case let status?: errors[status, default: 0] += 1
                    case nil: unanswered += 1
                    }
                }
                let rows = try await reminders()
                if rows.count == due.count * members.count && rows.allSatisfy({ $0.status == Delivery.Status.sent })
                    && ports.allSatisfy({ answered[$0, default: 0] >= minimumAnswers }) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            for s in servers { s.terminate() }
            for s in servers { await DeliveryResilienceTests.exited(s) }
            #expect(errors.isEmpty, "the cron endpoints answered with errors (status: count): \(errors)")
            #expect(ports.allSatisfy { answered[$0, default: 0] >= minimumAnswers },
                    "the cron endpoints answered too few calls: \(answered) of \(cronCalls), \(busy) busy (503), \(unanswered) without an answer in 30 s")

            let rows = try await reminders()
            #expect(rows.count == due.count * members.count)
            #expect(rows.allSatisfy { $0.status == Delivery.Status.sent })
            for r in rows { #expect(r.created_at >= due[r.stream_id]!, "reminder for \(r.stream_id) queued before it was due") }
            let lateness = rows.compactMap { r in r.sent_at.map { $0.timeIntervalSince(due[r.stream_id]!) } }.sorted()
            if !lateness.isEmpty {
                let median = lateness[lateness.count / 2], p95 = lateness[min(lateness.count - 1, lateness.count * 95 / 100)]
                print(String(format: "reminder lateness (sent − due) over %d emails: min %.2fs median %.2fs p95 %.2fs max %.2fs; cron calls %d (%d unanswered)",
                             lateness.count, lateness.first!, median, p95, lateness.last!, cronCalls, unanswered))
            }
            let flags = try await LiveStream.query(on: t.app.db).all()
            #expect(flags.allSatisfy { $0.reminderSent })
        }
        // Each member: one scheduled and one reminder email per stream, no more.
        let stored = MailPeers.sinkMessages(containing: "-\(run)@")
        #expect(stored.count == members.count)
        for (address, files) in stored { #expect(files.count == 24, "\(address): \(files.count) emails") }
    }
}
