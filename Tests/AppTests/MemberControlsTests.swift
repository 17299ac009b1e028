import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

@Suite struct UnsubscribeTests {
    static func unsubscribeURL(_ m: MailMessage) -> String? {
        m.headers.first { $0.name == "List-Unsubscribe" }.map { String($0.value.dropFirst().dropLast()) }
    }

    @Test func oneClickRoundTrip() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            _ = try await t.createStream(scheduled: false)
            try await t.drainWorker()
            let m1 = try #require(await transport.messages(to: "m1@example.com").first)
            #expect(m1.headers.contains(.init("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")))
            #expect(m1.render().contains("\r\nList-Unsubscribe: <https://api.fit.example.com/api/unsubscribe/"))
            let url = try #require(Self.unsubscribeURL(m1))
            #expect(url.hasPrefix("https://api.fit.example.com/api/unsubscribe/"))
            #expect(m1.text.contains(url) && m1.html?.contains(HTML.escape(url)) == true) // footer link
            let path = String(url.dropFirst("https://api.fit.example.com/".count))

            // GET (link scanners) shows a page and changes nothing.
            let page = try await t.send(.GET, path)
            #expect(page.status == .ok && page.headers.contentType == .html)
            #expect(page.raw.contains("<form method=\"post\"") && page.raw.contains("Name creator"))
            #expect(try await NotificationMute.query(on: t.app.db).count() == 0)

            // RFC 8058 one-click POST, no auth.
            let post = try await t.send(.POST, path, raw: "List-Unsubscribe=One-Click", headers: ["Content-Type": "application/x-www-form-urlencoded"])
            #expect(post.status == .ok)
            #expect(try await NotificationMute.query(on: t.app.db).count() == 1)
            #expect(try await t.send(.POST, path, raw: "List-Unsubscribe=One-Click", headers: ["Content-Type": "application/x-www-form-urlencoded"]).status == .ok)
            #expect(try await NotificationMute.query(on: t.app.db).count() == 1)
            #expect(try await t.send(.GET, path).raw.contains("no longer get emails"))

            // The next fan-out skips m1 (a `skipped` row), the others still get it.
            let next = try await t.createStream(scheduled: false)
            try await t.drainWorker()
            let rows = Dictionary(uniqueKeysWithValues: try await t.deliveries(next).map { ($0.recipientID, $0.status) })
            #expect(rows == ["m1": Delivery.Status.skipped, "m2": Delivery.Status.sent, "both": Delivery.Status.sent])
            #expect(await transport.messages(to: "m1@example.com").count == 1)
        }
    }

    @Test func forgedAndForeignTokens() async throws {
        try await TestApp.run { t in
            try await NotificationPipelineTests.seedAudience(t)
            let tokens = t.app.deps.unsubscribe
            let m1 = try #require(try await User.find("m1", on: t.app.db))
            let good = tokens.token(member: "m1", creator: "creator", memberUID: m1.agoraUid)
            #expect(try await t.send(.GET, "api/unsubscribe/\(good)").status == .ok)
            // Tampered payload or signature, garbage, a token signed with another secret → 400.
            var tampered = Array(good)
            tampered[2] = tampered[2] == "A" ? "B" : "A"
            let other = UnsubscribeTokens(jwtSecret: "another-secret-that-is-long-enough-123456").token(member: "m1", creator: "creator", memberUID: m1.agoraUid)
            for bad in [String(tampered), good + "x", "nope", other, String(repeating: "a", count: 600)] {
                let r = try await t.send(.POST, "api/unsubscribe/\(bad)", raw: "List-Unsubscribe=One-Click", headers: ["Content-Type": "application/x-www-form-urlencoded"])
                #expect(r.status == .badRequest, "\(bad.prefix(20)) → \(r.status)")
                #expect(r.errorCode == "invalid_token")
            }
            // Validly signed but for an account that is gone or was re-created under the same id → 404.
            let ghost = tokens.token(member: "ghost", creator: "creator", memberUID: 42)
            #expect(try await t.send(.POST, "api/unsubscribe/\(ghost)", raw: "List-Unsubscribe=One-Click").status == .notFound)
            try await t.send(.DELETE, "api/admin/users/m1", bearer: t.admin)
            try await t.importUsers([TestApp.user("m1")])
            let reborn = try await t.send(.POST, "api/unsubscribe/\(good)", raw: "List-Unsubscribe=One-Click")
            #expect(reborn.status == .notFound)
            #expect(try await NotificationMute.query(on: t.app.db).count() == 0)
        }
    }
}

@Suite struct PreferencesTests {
    /// The email switches (the top-level booleans; push sits beside them in `push`).
    static func email(_ r: TestApp.Reply) -> [String: Bool] {
        (r.json["preferences"] as? [String: Any] ?? [:]).compactMapValues { $0 as? Bool }
    }

    @Test func getAndPutPreferences() async throws {
        try await TestApp.run { t in
            try await NotificationPipelineTests.seedAudience(t)
            let token = try await t.token("m1")
            let initial = try await t.send(.GET, "api/me/notification-preferences", bearer: token)
            #expect(initial.status == .ok)
            #expect(Self.email(initial) == ["liveNow": true, "scheduled": true, "reminder": true])
            #expect(initial.json["mutedCreators"] as? [String] == [])
            let put = try await t.send(.PUT, "api/me/notification-preferences", bearer: token, json: ["reminder": false, "mutedCreators": ["creator"]])
            #expect(put.status == .ok)
            #expect(Self.email(put) == ["liveNow": true, "scheduled": true, "reminder": false])
            #expect(put.json["mutedCreators"] as? [String] == ["creator"])
            let partial = try await t.send(.PUT, "api/me/notification-preferences", bearer: token, json: ["liveNow": false])
            #expect(Self.email(partial) == ["liveNow": false, "scheduled": true, "reminder": false])
            #expect(partial.json["mutedCreators"] as? [String] == ["creator"])
            #expect(try await t.send(.PUT, "api/me/notification-preferences", bearer: token, json: ["mutedCreators": ["nobody"]]).status == .badRequest)
            #expect(try await t.send(.PUT, "api/me/notification-preferences", bearer: token, json: ["reminder": "no"]).status == .badRequest)
            #expect(try await t.send(.GET, "api/me/notification-preferences").status == .unauthorized)
            // Another member's settings are their own.
            let m2 = try await t.send(.GET, "api/me/notification-preferences", bearer: try await t.token("m2"))
            #expect(Self.email(m2) == ["liveNow": true, "scheduled": true, "reminder": true])
        }
    }

    @Test func kindSwitchesAreHonouredByTheFanOut() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("m2"), json: ["liveNow": false])
            let stream = try await t.createStream()
            let owner = try await t.token("creator")
            let notify = try await t.send(.POST, "api/creator/streams/\(stream)/notify", bearer: owner, json: ["type": "reminder"])
            #expect(notify.json["emailsSent"] as? Int == 3) // reminders still on for m2
            try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: owner, json: ["isLive": true])
            try await t.drainWorker()
            let live = Dictionary(uniqueKeysWithValues: try await t.deliveries(stream).filter { $0.kind == .liveNow }.map { ($0.recipientID, $0.status) })
            #expect(live == ["m1": Delivery.Status.sent, "m2": Delivery.Status.skipped, "both": Delivery.Status.sent])
            let m2Subjects = await transport.messages(to: "m2@example.com").map(\.subject)
            #expect(m2Subjects.isEmpty, "\(m2Subjects)") // scheduled/reminder fan-outs found the stream already live
            // Opting out after the fan-out but before the send also skips.
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("m1"), json: ["mutedCreators": ["creator"]])
            let other = try await t.createStream(scheduled: false)
            let job = try #require(try await Job.query(on: t.app.db).filter(\.$key == "fanout:\(other):live_now:0").first())
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("both"), json: ["liveNow": false])
            try await FanOut.run(job, db: t.app.db, now: { t.app.deps.clock.now() })
            try await t.send(.PUT, "api/me/notification-preferences", bearer: try await t.token("both"), json: ["liveNow": true, "mutedCreators": ["creator"]])
            try await t.drainWorker()
            #expect(try await t.deliveries(other).allSatisfy { $0.status == Delivery.Status.skipped })
        }
    }
}

@Suite struct CalendarAndOutboxTests {
    @Test func icsIsWellFormed() {
        let event = CalendarEvent(uid: "s1@api.fit.example.com", sequence: 2, start: Date(timeIntervalSince1970: 1_772_955_000),
                                  end: Date(timeIntervalSince1970: 1_772_958_600), summary: "Leg day, part 2; bring water \\ towel",
                                  description: "Line one\nLine two 🏋️ " + String(repeating: "é", count: 80), url: "https://fit.example.com/live/s1",
                                  stamp: Date(timeIntervalSince1970: 1_772_900_000))
        let ics = event.ics(method: .publish)
        #expect(ics.contains("DTSTART:20260308T073000Z\r\n") && ics.contains("DTEND:20260308T083000Z\r\n"))
        #expect(ics.contains("SUMMARY:Leg day\\, part 2\\; bring water \\\\ towel\r\n"))
        #expect(ics.contains("METHOD:PUBLISH\r\n") && ics.contains("SEQUENCE:2\r\n") && ics.contains("UID:s1@api.fit.example.com\r\n"))
        for line in ics.components(separatedBy: "\r\n") { #expect(line.utf8.count <= 75, "\(line)") }
        #expect(event.ics(method: .cancel).contains("METHOD:CANCEL\r\n"))
        #expect(event.ics(method: .cancel).contains("STATUS:CANCELLED\r\n"))
    }

    @Test func scheduledEmailCarriesTheInviteAndCalendarLink() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await NotificationPipelineTests.seedAudience(t)
            let start = t.start.addingTimeInterval(7200)
            let stream = try await t.createStream(start: start, title: "Yoga, flow; breathe")
            try await t.drainWorker()
            let m = try #require(await transport.messages(to: "m2@example.com").first)
            let calendar = try #require(m.calendar)
            #expect(calendar.method == .publish)
            #expect(calendar.ics.contains("UID:\(stream)@api.fit.example.com\r\n"))
            #expect(calendar.ics.contains("DTSTART:\(CalendarEvent.utc(start))\r\n"))
            let link = try #require(m.text.components(separatedBy: "\n").first { $0.hasPrefix("📅 Add to Google Calendar: ") })
            let url = try #require(URLComponents(string: String(link.dropFirst("📅 Add to Google Calendar: ".count))))
            #expect(url.host == "calendar.google.com")
            #expect(url.queryItems?.first { $0.name == "dates" }?.value == "\(CalendarEvent.utc(start))/\(CalendarEvent.utc(start.addingTimeInterval(3600)))")
            #expect(url.queryItems?.first { $0.name == "text" }?.value == "Yoga, flow; breathe — Name creator")
            #expect(m.html?.contains("Add to Google Calendar") == true)
            // live_now has no invite.
            try await t.send(.PATCH, "api/creator/streams/\(stream)/status", bearer: try await t.token("creator"), json: ["isLive": true])
            try await t.drainWorker()
            #expect(await transport.messages(to: "m2@example.com").last?.calendar == nil)
        }
    }

    @Test func devOutboxShowsStoredEmails() async throws {
        try await TestApp.run(adjust: { $0.isDevelopment = true }) { t in
            try await NotificationPipelineTests.seedAudience(t)
            _ = try await t.createStream(title: "Outbox <check>")
            try await t.drainWorker()
            let list = try await t.send(.GET, "dev/outbox")
            #expect(list.status == .ok && list.headers.contentType == .html)
            #expect(list.raw.contains("📅 Name creator scheduled a live stream") && list.raw.contains("m1@example.com"))
            let firstLink = try #require(list.raw.range(of: "href=\"/dev/outbox/")).upperBound
            let id = list.raw[firstLink...].prefix { $0.isNumber }
            let detail = try await t.send(.GET, "dev/outbox/\(id)")
            #expect(detail.status == .ok)
            #expect(detail.raw.contains("<iframe sandbox"))
            #expect(detail.raw.contains("BEGIN:VCALENDAR"))
            #expect(detail.raw.contains("List-Unsubscribe"))
            #expect(detail.raw.contains("Outbox &lt;check&gt;") && !detail.raw.contains("Outbox <check>"))
            #expect(try await t.send(.GET, "dev/outbox/999999").status == .notFound)
        }
        try await TestApp.run { t in
            let r = try await t.send(.GET, "dev/outbox")
            #expect(r.status == .notFound) // not outside development
        }
    }
}
