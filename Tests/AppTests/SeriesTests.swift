import Fluent
import Foundation
import Mailer
import SQLKit
import Testing
import VaporTesting
@testable import App

/// Issue 19 (series): weekly classes that keep their wall-clock time across DST, their edits and
/// emails, the calendar feed, and RSVPs to a whole series.
@Suite struct SeriesTests {
    static let zones = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata"]

    static func oracleInput(_ r: SeriesRule, through: LocalDate) -> [String: Any] {
        var d: [String: Any] = ["tz": r.zoneID, "start": r.startDate.description, "time": r.time.description,
                                "byday": r.byDay.map(\.rawValue), "interval": r.interval, "through": through.description]
        if let u = r.until { d["until"] = u.description }
        if let c = r.count { d["count"] = c }
        return d
    }

    /// "2026-03-09T11:30:00Z" → "20260309T113000Z" (our `utcStamp` form).
    static func compact(_ iso: String) -> String { iso.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "") }

    @Test(.enabled(if: SeriesOracle.available)) func expansionMatchesDateutilAcrossDSTInFourZones() async throws {
        var rules: [SeriesRule] = []
        for zone in Self.zones {
            rules.append(SeriesRule(zoneID: zone, startDate: LocalDate("2026-01-07")!, time: LocalTime("07:30")!, byDay: [.MO, .WE],
                                    until: LocalDate("2027-01-31")))
            rules.append(SeriesRule(zoneID: zone, startDate: LocalDate("2026-02-13")!, time: LocalTime("18:45")!, byDay: [.TU, .TH, .SA],
                                    interval: 2, count: 60))
            // The changeover hours: 02:30 / 01:30 do not exist on a spring-forward day and happen
            // twice on a fall-back day (New York and Sydney at 02:00-03:00, London at 01:00-02:00).
            for time in ["02:30", "01:30"] {
                rules.append(SeriesRule(zoneID: zone, startDate: LocalDate("2026-01-04")!, time: LocalTime(time)!, byDay: [.SU],
                                        until: LocalDate("2027-01-03")))
            }
        }
        let through = LocalDate("2027-02-28")!
        let expected = try await SeriesOracle.expand(rules.map { Self.oracleInput($0, through: through) })
        #expect(expected.count == rules.count)
        for (rule, want) in zip(rules, expected) {
            let dates = rule.dates(through: through)
            let ours = dates.map { SeriesRule.utcStamp(rule.instant(on: $0)) }
            #expect(ours == want.map(Self.compact), "\(rule.zoneID) \(rule.time) \(rule.byDay)")
            #expect(ours.count > 40)
            #expect(dates.allSatisfy(rule.contains))
            #expect(!rule.contains(dates[0].adding(days: 1)) || rule.byDay.count > 1)
            if rule.count != nil { #expect(rule.lastDate == dates.last) }
        }
        // Both DST changes are inside the year: New York's 7:30 class moves in UTC.
        let ny = rules[0]
        #expect(SeriesRule.utcStamp(ny.instant(on: LocalDate("2026-03-04")!)) == "20260304T123000Z")
        #expect(SeriesRule.utcStamp(ny.instant(on: LocalDate("2026-03-09")!)) == "20260309T113000Z")
        #expect(SeriesRule.utcStamp(ny.instant(on: LocalDate("2026-11-02")!)) == "20261102T123000Z")
    }

    @Test func patternInBothZones() {
        let rule = SeriesRule(zoneID: "America/New_York", startDate: LocalDate("2027-01-04")!, time: LocalTime("07:30")!, byDay: [.MO, .WE])
        let first = rule.instant(on: LocalDate("2027-01-04")!)
        #expect(rule.pattern(at: first) == "Mondays and Wednesdays at 7:30 AM EST")
        #expect(rule.memberPattern(at: first, memberZone: "Asia/Kolkata")
            == "6:00 PM IST for you; it moves when the clocks change in one of the two places")
        #expect(rule.memberPattern(at: first, memberZone: "America/New_York") == nil)
        // 7:30 PM in New York is the next morning in Sydney.
        let evening = SeriesRule(zoneID: "America/New_York", startDate: LocalDate("2027-01-04")!, time: LocalTime("19:30")!, byDay: [.MO, .WE], interval: 2)
        let e = evening.instant(on: LocalDate("2027-01-04")!)
        #expect(evening.pattern(at: e) == "Every other week on Mondays and Wednesdays at 7:30 PM EST")
        #expect(evening.memberPattern(at: e, memberZone: "Australia/Sydney")?
            .hasPrefix("Tuesdays and Thursdays at 11:30 AM AEDT for you (the next day where you are)") == true)
        // Kolkata and Tokyo never change clocks: no note.
        let kolkata = SeriesRule(zoneID: "Asia/Kolkata", startDate: LocalDate("2027-01-04")!, time: LocalTime("06:00")!, byDay: [.FR])
        #expect(kolkata.memberPattern(at: kolkata.instant(on: LocalDate("2027-01-08")!), memberZone: "Asia/Tokyo") == "9:30 AM JST for you")
    }

    @Test func localDatesAndTimesAreStrict() {
        #expect(LocalDate("2026-02-29") == nil && LocalDate("2028-02-29") != nil && LocalDate("2026-1-01") == nil && LocalDate("２０２６-01-01") == nil)
        #expect(LocalDate("1969-12-31")!.adding(days: 1).description == "1970-01-01" && LocalDate("2026-11-30")!.weekday == .MO)
        #expect(LocalTime("7:30") == nil && LocalTime("24:00") == nil && LocalTime("07:60") == nil && LocalTime("23:59")?.description == "23:59")
    }

    // MARK: API

    static func body(zone: String = "America/New_York", start: String = "2026-03-09", time: String = "07:30", byDay: [String] = ["MO", "WE"],
                     until: String? = nil, count: Int? = nil, capacity: Int? = nil, title: String = "HIIT") -> [String: Any] {
        var recurrence: [String: Any] = ["frequency": "weekly", "byDay": byDay]
        if let until { recurrence["until"] = until }
        if let count { recurrence["count"] = count }
        var b: [String: Any] = ["title": title, "workoutType": "HIIT", "timezone": zone, "startDate": start, "localTime": time,
                                "durationMinutes": 45, "recurrence": recurrence]
        if let capacity { b["capacity"] = capacity }
        return b
    }

    static func create(_ t: TestApp, _ body: [String: Any], as creator: String = "creator") async throws -> (series: [String: Any], occurrences: [[String: Any]]) {
        let r = try await t.send(.POST, "api/creator/series", bearer: try await t.token(creator), json: body)
        #expect(r.status == .created, "\(r.raw.prefix(400))")
        return (r.json["series"] as? [String: Any] ?? [:], r.json["occurrences"] as? [[String: Any]] ?? [])
    }

    static func get(_ t: TestApp, _ id: String) async throws -> (series: [String: Any], occurrences: [[String: Any]]) {
        let r = try await t.send(.GET, "api/creator/series/\(id)", bearer: try await t.token("creator"))
        #expect(r.status == .ok, "\(r.raw.prefix(300))")
        return (r.json["series"] as? [String: Any] ?? [:], r.json["occurrences"] as? [[String: Any]] ?? [])
    }

    @Test func badSeriesBodiesAreRefused() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let creator = try await t.token("creator")
            let bad: [(String, [String: Any])] = [
                ("zone", Self.body(zone: "America/Atlantis")),
                ("zone path", Self.body(zone: "../etc/passwd")),
                ("date", Self.body(start: "2026-02-30")),
                ("time", Self.body(time: "7:30")),
                ("day", Self.body(byDay: ["MO", "XX"])),
                ("no day", Self.body(byDay: [])),
                ("twice", Self.body(byDay: ["MO", "MO"])),
                ("until before start", Self.body(until: "2026-03-01")),
                ("count", Self.body(count: 0)),
                ("past", Self.body(start: "2025-01-05", until: "2025-03-01")),
            ]
            for (name, body) in bad {
                let r = try await t.send(.POST, "api/creator/series", bearer: creator, json: body)
                #expect(r.status == .badRequest && r.errorCode == "validation_error", "\(name): \(r.raw.prefix(200))")
            }
            var both = Self.body(until: "2026-06-01")
            both["recurrence"] = ["frequency": "weekly", "byDay": ["MO"], "until": "2026-06-01", "count": 3]
            #expect(try await t.send(.POST, "api/creator/series", bearer: creator, json: both).status == .badRequest)
            var daily = Self.body()
            daily["recurrence"] = ["frequency": "daily", "byDay": ["MO"]]
            #expect(try await t.send(.POST, "api/creator/series", bearer: creator, json: daily).status == .badRequest)
            let member = try await t.send(.POST, "api/creator/series", bearer: try await t.token("m1"), json: Self.body())
            #expect(member.status == .forbidden && member.errorCode == "not_a_creator")
            let (series, _) = try await Self.create(t, Self.body())
            let id = series["id"] as! String
            #expect(try await t.send(.GET, "api/creator/series/\(id)", bearer: try await t.token("creator2")).status == .forbidden)
            #expect(try await t.send(.GET, "api/creator/series/nope", bearer: creator).status == .notFound)
            #expect(try await t.send(.POST, "api/creator/series/\(id)/skip", bearer: creator, json: ["dates": ["2026-03-10"]]).status == .badRequest,
                    "a Tuesday is not a date of a Monday/Wednesday series")
            // Response shape: nulls present, dates with Z.
            #expect(series["description"] is NSNull && series["capacity"] is NSNull && series["previousSeriesId"] is NSNull)
            #expect((series["createdAt"] as? String)?.hasSuffix("Z") == true)
            #expect((series["recurrence"] as? [String: Any])?["rrule"] as? String == "FREQ=WEEKLY;WKST=MO;BYDAY=MO,WE")
        }
    }

    @Test(.enabled(if: SeriesOracle.available)) func occurrencesAndTheFeedMatchIndependentExpansion() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let creator = try await t.token("creator")
            var created: [(id: String, rule: SeriesRule, occurrences: [[String: Any]])] = []
            for zone in Self.zones {
                let (series, occurrences) = try await Self.create(t, Self.body(zone: zone, start: "2026-03-09", until: "2027-03-08",
                                                                                title: "HIIT \(zone)"))
                let rule = SeriesRule(zoneID: zone, startDate: LocalDate("2026-03-09")!, time: LocalTime("07:30")!, byDay: [.MO, .WE],
                                      until: LocalDate("2027-03-08"))
                created.append((series["id"] as! String, rule, occurrences))
            }
            let through = LocalDate("2027-03-31")!
            let oracle = try await SeriesOracle.expand(created.map { Self.oracleInput($0.rule, through: through) })
            for (series, want) in zip(created, oracle) {
                // Eight weeks of Mondays and Wednesdays, exactly dateutil's first instants.
                let starts = series.occurrences.compactMap { $0["startTime"] as? String }.map { Self.compact($0.replacingOccurrences(of: ".000", with: "")) }
                #expect(starts.count >= 15 && starts == Array(want.map(Self.compact).prefix(starts.count)), "\(series.rule.zoneID)")
                #expect(series.occurrences.allSatisfy { $0["seriesId"] as? String == series.id })
            }
            // New York: move the 3rd class by 30 minutes, cancel the 4th, skip the 6th.
            let ny = created[0]
            let ids = ny.occurrences.map { $0["id"] as! String }
            let third = try #require(ISO8601.parse(ny.occurrences[2]["startTime"] as! String))
            #expect(try await t.send(.PATCH, "api/creator/streams/\(ids[2])", bearer: creator,
                                     json: ["startTime": ISO8601.string(third.addingTimeInterval(1800))]).status == .ok)
            #expect(try await t.send(.POST, "api/creator/streams/\(ids[3])/cancel", bearer: creator).status == .ok)
            let sixthDate = LocalDate(try #require(ISO8601.parse(ny.occurrences[5]["startTime"] as! String)), in: TimeZone(identifier: "America/New_York")!)
            let skip = try await t.send(.POST, "api/creator/series/\(ny.id)/skip", bearer: creator, json: ["dates": [sixthDate.description]])
            #expect(skip.status == .ok && skip.json["cancelled"] as? Int == 1, "\(skip.raw.prefix(300))")

            let feed = try await t.send(.GET, "api/creator/creator/schedule.ics")
            #expect(feed.status == .ok)
            let read = try await SeriesOracle.feed(feed.raw, from: t.start, to: t.start.addingTimeInterval(400 * 86_400))
            #expect(read["crlf_only"] as? Bool == true && (read["max_line_octets"] as? Int ?? 99) <= 75)
            #expect((read["vtimezone_problems"] as? [String])?.isEmpty == true, "\(read["vtimezone_problems"] ?? "")")
            let vtimezones = read["vtimezones"] as? [String: Int] ?? [:]
            #expect(Set(vtimezones.keys) == Set(Self.zones) && Set(read["tzids_used"] as? [String] ?? []) == Set(Self.zones))
            #expect(vtimezones["America/New_York"] ?? 0 >= 3 && vtimezones["Asia/Kolkata"] == 1)
            let instances = read["instances"] as? [[String: Any]] ?? []
            let masters = read["masters"] as? [[String: Any]] ?? []
            for (i, series) in created.enumerated() {
                let uid = "series-\(series.id)@api.fit.example.com"
                let got = instances.filter { $0["uid"] as? String == uid }.map { Self.compact($0["start"] as! String) }
                var want = oracle[i].map(Self.compact).filter { $0 >= SeriesRule.utcStamp(t.start) }
                if i == 0 {
                    want[2] = SeriesRule.utcStamp(third.addingTimeInterval(1800))
                    want.remove(at: 5)
                    want.remove(at: 3)
                }
                #expect(got.sorted() == want.sorted(), "\(series.rule.zoneID): \(got.count) vs \(want.count)")
                let master = try #require(masters.first { $0["uid"] as? String == uid })
                let (json, _) = try await Self.get(t, series.id)
                let rrule = (json["recurrence"] as? [String: Any])?["rrule"] as? String ?? ""
                #expect(Set((master["rrule"] as? String ?? "").split(separator: ";")) == Set(rrule.split(separator: ";")), "RRULE round trip")
                if i == 0 {
                    #expect(Set(master["exdates"] as? [String] ?? []) == Set([3, 5].map { ny.occurrences[$0]["startTime"] as! String }
                        .map { $0.replacingOccurrences(of: ".000", with: "") }))
                    #expect(feed.raw.contains("RECURRENCE-ID;TZID=America/New_York:"))
                }
            }
            // A creator with nothing planned: a valid, empty calendar.
            let empty = try await t.send(.GET, "api/creator/creator2/schedule.ics")
            #expect(empty.status == .ok && !empty.raw.contains("BEGIN:VEVENT"))
            let emptyRead = try await SeriesOracle.feed(empty.raw, from: t.start, to: t.start.addingTimeInterval(86_400))
            #expect((emptyRead["instances"] as? [Any])?.isEmpty == true && (emptyRead["components"] as? Int ?? 0) >= 1)
        }
    }

    /// Each member counts the emails every kind of edit sends: one per series-level change.
    @Test func editsSendOneEmailPerMemberPerChange() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport) { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("m3", timezone: "Australia/Sydney")],
                                    follows: ["m1", "m2", "m3"].map { ["followerId": $0, "followedId": "creator"] })
            let creator = try await t.token("creator")
            let members = ["m1@example.com", "m2@example.com", "m3@example.com"]
            func counts() async -> [Int] { var c: [Int] = []; for m in members { c.append(await transport.messages(to: m).count) }; return c }

            let (series, occurrences) = try await Self.create(t, Self.body(start: "2026-03-16", time: "19:30"))
            let id = series["id"] as! String
            try await t.drainWorker()
            #expect(await counts() == [1, 1, 1], "one announcement, not one per occurrence (\(occurrences.count))")
            let m2 = try #require(await transport.messages(to: "m2@example.com").first)
            #expect(m2.subject.contains("weekly class") && m2.text.contains("Mondays and Wednesdays at 7:30 PM EDT"), "\(m2.text)")
            #expect(m2.text.contains("Tuesdays and Thursdays at 5:00 AM IST for you (the next day where you are)"), "\(m2.text)")
            let m3 = try #require(await transport.messages(to: "m3@example.com").first)
            #expect(m3.text.contains("at 10:30 AM AEDT for you (the next day where you are)"), "\(m3.text)")
            let ics = try #require(m2.calendar?.ics)
            #expect(ics.contains("RRULE:FREQ=WEEKLY;WKST=MO;BYDAY=MO,WE") && ics.contains("BEGIN:VTIMEZONE") && ics.contains("DTSTART;TZID=America/New_York:20260316T193000"))

            // One occurrence moved: its own rescheduled email, as for a single stream.
            let ids = occurrences.map { $0["id"] as! String }
            let second = try #require(ISO8601.parse(occurrences[1]["startTime"] as! String))
            #expect(try await t.send(.PATCH, "api/creator/streams/\(ids[1])", bearer: creator,
                                     json: ["startTime": ISO8601.string(second.addingTimeInterval(3600))]).status == .ok)
            try await t.drainWorker(advancing: 61)
            #expect(await counts() == [2, 2, 2])
            let moved = try #require(await transport.messages(to: "m1@example.com").last?.calendar?.ics)
            #expect(moved.contains("UID:series-\(id)@") && moved.contains("RECURRENCE-ID;TZID=America/New_York:20260318T193000"), "\(moved)")
            // One occurrence cancelled.
            #expect(try await t.send(.POST, "api/creator/streams/\(ids[2])/cancel", bearer: creator).status == .ok)
            try await t.drainWorker()
            #expect(await counts() == [3, 3, 3])
            // This and following: 8:00 PM from April 6 — the series splits, later classes keep their ids.
            let split = try await t.send(.PATCH, "api/creator/series/\(id)", bearer: creator, json: ["from": "2026-04-06", "localTime": "20:00"])
            #expect(split.status == .ok && split.json["split"] as? Bool == true, "\(split.raw.prefix(300))")
            let newSeries = try #require((split.json["series"] as? [String: Any])?["id"] as? String)
            #expect(newSeries != id && (split.json["series"] as? [String: Any])?["previousSeriesId"] as? String == id)
            let after = split.json["occurrences"] as? [[String: Any]] ?? []
            #expect(after.first?["startTime"] as? String == "2026-04-07T00:00:00.000Z", "8 PM EDT on April 6")
            #expect(Set(after.compactMap { $0["id"] as? String }).isSuperset(of: ids.suffix(from: 6)))
            let old = try await Self.get(t, id)
            #expect((old.series["recurrence"] as? [String: Any])?["until"] as? String == "2026-04-05")
            try await t.drainWorker()
            #expect(await counts() == [4, 4, 4])
            #expect(await transport.messages(to: "m1@example.com").last?.subject.contains("changed the schedule") == true)
            // Vacation: two dates off, one email.
            let skip = try await t.send(.POST, "api/creator/series/\(newSeries)/skip", bearer: creator, json: ["dates": ["2026-04-13", "2026-04-15"]])
            #expect(skip.status == .ok && skip.json["cancelled"] as? Int == 2)
            try await t.drainWorker()
            #expect(await counts() == [5, 5, 5])
            let vacation = try #require(await transport.messages(to: "m1@example.com").last)
            #expect(vacation.text.contains("No class on: April 13 and April 15"), "\(vacation.text)")
            #expect(vacation.calendar?.ics.contains("EXDATE;TZID=America/New_York:20260413T200000,20260415T200000") == true)
            // The same skip again changes nothing and sends nothing.
            #expect(try await t.send(.POST, "api/creator/series/\(newSeries)/skip", bearer: creator, json: ["dates": ["2026-04-13"]]).json["cancelled"] as? Int == 0)
            // End: every upcoming class cancelled, one email.
            let end = try await t.send(.POST, "api/creator/series/\(newSeries)/end", bearer: creator)
            #expect(end.status == .ok && (end.json["series"] as? [String: Any])?["state"] as? String == "ended")
            #expect((end.json["occurrences"] as? [[String: Any]] ?? []).allSatisfy { $0["state"] as? String == "cancelled" })
            #expect(try await t.send(.POST, "api/creator/series/\(newSeries)/end", bearer: creator).status == .ok)
            #expect(try await t.send(.PATCH, "api/creator/series/\(newSeries)", bearer: creator, json: ["title": "x"]).errorCode == "series_ended")
            try await t.drainWorker()
            #expect(await counts() == [6, 6, 6])
            #expect(await transport.messages(to: "m3@example.com").last?.subject.contains("ended") == true)
            // Nothing else was queued behind the series notices (no per-occurrence emails).
            try await t.drainWorker(advancing: 120)
            #expect(await counts() == [6, 6, 6])
        }
    }

    @Test func inPlaceEditMovesUpcomingClassesAndKeepsTheirIds() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let creator = try await t.token("creator")
            let (series, occurrences) = try await Self.create(t, Self.body(start: "2026-03-09", count: 10))
            let id = series["id"] as! String
            #expect(occurrences.count == 10)
            // Nothing has happened yet: the series itself changes (no split), to Tuesdays and Wednesdays.
            let r = try await t.send(.PATCH, "api/creator/series/\(id)", bearer: creator,
                                     json: ["recurrence": ["frequency": "weekly", "byDay": ["TU", "WE"], "count": 10], "title": "HIIT+"])
            #expect(r.status == .ok && r.json["split"] as? Bool == false, "\(r.raw.prefix(300))")
            let (after, all) = try await Self.get(t, id)
            #expect(after["revision"] as? Int == 1 && after["title"] as? String == "HIIT+")
            let upcoming = all.filter { $0["state"] as? String == "scheduled" }
            #expect(upcoming.count == 10 && upcoming.allSatisfy { $0["title"] as? String == "HIIT+" })
            // The Wednesdays kept their streams; the Mondays were cancelled, Tuesdays added.
            let wednesdays = Set(occurrences.enumerated().filter { $0.offset % 2 == 1 }.map { $0.element["id"] as! String })
            #expect(wednesdays.isSubset(of: Set(upcoming.map { $0["id"] as! String })))
            #expect(all.filter { $0["state"] as? String == "cancelled" }.count == 5)
        }
    }

    @Test func seriesRSVPsTheHorizonTopUpAndCapacity() async throws {
        let transport = RecordingTransport()
        try await TestApp.run(mailTransport: transport, adjust: { $0.cronSecret = "series-cron-secret-0123456789" }) { t in
            try await t.seedBasics()
            try await t.importUsers([TestApp.user("m3")])
            // Sundays and Wednesdays: the first class is tomorrow, within the token's early-join day.
            let (series, occurrences) = try await Self.create(t, Self.body(start: "2026-03-07", byDay: ["SU", "WE"], capacity: 1))
            let id = series["id"] as! String
            let first = try await t.send(.POST, "api/series/\(id)/rsvp", bearer: try await t.token("m1"))
            #expect(first.status == .ok && (first.json["rsvp"] as? [String: Any])?["status"] as? String == "confirmed", "\(first.raw.prefix(300))")
            #expect((first.json["occurrences"] as? [[String: Any]])?.count == occurrences.count)
            let second = try await t.send(.POST, "api/series/\(id)/rsvp", bearer: try await t.token("m2"))
            #expect((second.json["occurrences"] as? [[String: Any]] ?? []).allSatisfy { $0["status"] as? String == "waitlisted" && $0["position"] as? Int == 1 })
            // Only confirmed members join a capacity-limited class.
            let token = try await t.send(.GET, "api/streams/\(occurrences[0]["id"] as! String)/token", bearer: try await t.token("m2"))
            #expect(token.status == .forbidden && token.errorCode == "not_registered")

            // Three weeks on, the daily job and the cron both top up; the new classes seat the series' RSVPs.
            t.setNow(t.start.addingTimeInterval(21 * 86_400))
            try await t.drainWorker()
            let cron = try await t.send(.POST, "api/cron/series-top-up", bearer: "series-cron-secret-0123456789")
            #expect(cron.status == .ok && cron.json["occurrencesCreated"] as? Int == 0, "the job already did it: \(cron.raw)")
            let (_, all) = try await Self.get(t, id)
            #expect(all.count >= occurrences.count + 5)
            let newest = try #require(all.last?["id"] as? String)
            let rsvps = try await t.send(.GET, "api/creator/streams/\(newest)/rsvps", bearer: try await t.token("creator"))
            let entries = rsvps.json["rsvps"] as? [[String: Any]] ?? []
            #expect(entries.map { "\($0["userId"]!):\($0["status"]!)" } == ["m1:confirmed", "m2:waitlisted"])
            // m1 leaves the series: m2 is promoted in every upcoming class and told once per class.
            let gone = try await t.send(.DELETE, "api/series/\(id)/rsvp", bearer: try await t.token("m1"))
            #expect(gone.status == .ok && gone.json["deleted"] as? Bool == true)
            let upcoming = all.filter { $0["state"] as? String == "scheduled" && (ISO8601.parse($0["startTime"] as! String) ?? .distantPast) > t.app.deps.clock.now() }
            try await t.drainWorker()
            let promoted = await transport.messages(to: "m2@example.com").filter { $0.subject.contains("You're in") }
            #expect(promoted.count == upcoming.count)
            // The creator "RSVPs" without a row; an ended series refuses RSVPs.
            #expect(try await t.send(.POST, "api/series/\(id)/rsvp", bearer: try await t.token("creator")).status == .ok)
            #expect(try await t.send(.POST, "api/creator/series/\(id)/end", bearer: try await t.token("creator")).status == .ok)
            #expect(try await t.send(.POST, "api/series/\(id)/rsvp", bearer: try await t.token("m3")).errorCode == "series_ended")
        }
    }

    /// Parallel series RSVPs never overbook an occurrence; parallel skips of one series each
    /// apply whole or not at all (one conditional write on the series' revision).
    @Test func parallelRSVPsAndSkipsKeepTheSeriesConsistent() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let members = (0..<20).map { "p\($0)" }
            try await t.importUsers(members.map { TestApp.user($0) })
            let (series, occurrences) = try await Self.create(t, Self.body(start: "2026-03-09", capacity: 5))
            let id = series["id"] as! String
            var tokens: [String] = []
            for m in members { tokens.append(try await t.token(m)) }
            let statuses = try await withThrowingTaskGroup(of: HTTPStatus.self) { group in
                for token in tokens { group.addTask { try await t.send(.POST, "api/series/\(id)/rsvp", bearer: token).status } }
                return try await group.reduce(into: [HTTPStatus]()) { $0.append($1) }
            }
            #expect(statuses.allSatisfy { $0 == .ok }, "\(statuses)")
            for o in occurrences {
                let counts = try await RSVP.counts(stream: o["id"] as! String, capacity: 5, on: t.app.db.sql)
                #expect(counts.confirmed == 5 && counts.waitlisted == 15)
            }
            let creator = try await t.token("creator")
            let dates = ["2026-03-16", "2026-03-18", "2026-03-23", "2026-03-25", "2026-03-30", "2026-04-01"]
            let answers = try await withThrowingTaskGroup(of: (String, HTTPStatus).self) { group in
                for d in dates { group.addTask { (d, try await t.send(.POST, "api/creator/series/\(id)/skip", bearer: creator, json: ["dates": [d]]).status) } }
                return try await group.reduce(into: [(String, HTTPStatus)]()) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0.1 == .ok || $0.1 == .conflict }, "\(answers)")
            let applied = Set(answers.filter { $0.1 == .ok }.map(\.0))
            #expect(!applied.isEmpty)
            let (after, all) = try await Self.get(t, id)
            #expect(Set(after["skippedDates"] as? [String] ?? []) == applied)
            #expect(after["revision"] as? Int == applied.count)
            let cancelledDates = Set(all.filter { $0["state"] as? String == "cancelled" }.compactMap { o -> String? in
                ISO8601.parse(o["startTime"] as! String).map { LocalDate($0, in: TimeZone(identifier: "America/New_York")!).description }
            })
            #expect(cancelledDates == applied)
        }
    }
}
