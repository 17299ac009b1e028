import Foundation

/// A calendar date without a zone ("2026-12-07"): series start and end dates, skipped dates and
/// occurrence dates are local dates in the series' zone. Arithmetic on day numbers (days since
/// 1970-01-01, proleptic Gregorian), so no calendar or zone is involved.
struct LocalDate: Hashable, Comparable, Sendable, CustomStringConvertible {
    let dayNumber: Int

    init(dayNumber: Int) { self.dayNumber = dayNumber }

    init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year) else { return nil }
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        dayNumber = era * 146_097 + doe - 719_468
    }

    /// Strictly `YYYY-MM-DD`, a real date.
    init?(_ text: String) {
        let b = Array(text.utf8)
        guard b.count == 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-") else { return nil }
        func number(_ r: Range<Int>) -> Int? {
            var n = 0
            for i in r { guard (48...57).contains(b[i]) else { return nil }; n = n * 10 + Int(b[i] - 48) }
            return n
        }
        guard let y = number(0..<4), let m = number(5..<7), let d = number(8..<10) else { return nil }
        self.init(year: y, month: m, day: d)
    }

    var components: (year: Int, month: Int, day: Int) {
        let z = dayNumber + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    var description: String {
        let c = components
        return String(format: "%04d-%02d-%02d", c.year, c.month, c.day)
    }

    /// `20261207` (iCalendar DATE form).
    var compact: String { description.replacingOccurrences(of: "-", with: "") }

    func adding(days: Int) -> LocalDate { LocalDate(dayNumber: dayNumber + days) }

    /// 1970-01-01 was a Thursday.
    var weekday: Weekday { Weekday.allCases[((dayNumber % 7) + 7 + 3) % 7] }

    /// The date at `instant` in `zone`.
    init(_ instant: Date, in zone: TimeZone) {
        let local = Int((instant.timeIntervalSince1970 + Double(zone.secondsFromGMT(for: instant))).rounded(.down))
        dayNumber = local >= 0 ? local / 86_400 : (local - 86_399) / 86_400
    }

    static func < (a: LocalDate, b: LocalDate) -> Bool { a.dayNumber < b.dayNumber }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

/// RFC 5545 weekday codes, Monday first (the week start the rules use, WKST=MO).
enum Weekday: String, CaseIterable, Codable, Sendable {
    case MO, TU, WE, TH, FR, SA, SU

    var index: Int { Weekday.allCases.firstIndex(of: self)! }
    var plural: String { ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"][index] }
    func shifted(by days: Int) -> Weekday { Weekday.allCases[((index + days) % 7 + 7) % 7] }
}

/// A wall-clock time of day, strictly `HH:MM` (24 h).
struct LocalTime: Hashable, Sendable, CustomStringConvertible {
    let hour: Int, minute: Int

    init?(_ text: String) {
        let b = Array(text.utf8)
        guard b.count == 5, b[2] == UInt8(ascii: ":"), [0, 1, 3, 4].allSatisfy({ (48...57).contains(b[$0]) }) else { return nil }
        hour = Int(b[0] - 48) * 10 + Int(b[1] - 48)
        minute = Int(b[3] - 48) * 10 + Int(b[4] - 48)
        guard hour < 24, minute < 60 else { return nil }
    }

    var description: String { String(format: "%02d:%02d", hour, minute) }
    var secondsIntoDay: Int { hour * 3600 + minute * 60 }
}

/// A weekly recurrence in a zone: the dates it produces and the UTC instant of each. Follows
/// RFC 5545 FREQ=WEEKLY;WKST=MO;BYDAY=…;INTERVAL=…;UNTIL|COUNT with DTSTART = `startDate` at
/// `time`, as python-dateutil's rrule expands it: weeks counted from the week holding the start
/// date, dates before it never occur, COUNT counts occurrences (skipped dates included — they are
/// EXDATEs), UNTIL is inclusive.
struct SeriesRule: Sendable, Equatable {
    var zoneID: String
    var startDate: LocalDate
    var time: LocalTime
    var byDay: [Weekday]
    var interval: Int = 1
    var until: LocalDate? = nil
    var count: Int? = nil

    var zone: TimeZone { TimeZone(identifier: zoneID) ?? TimeZone(identifier: "UTC")! }

    /// The rule's dates from its start through `through` (inclusive).
    func dates(through: LocalDate) -> [LocalDate] {
        let days = Set(byDay.map(\.index))
        let weekStart = startDate.adding(days: -startDate.weekday.index)
        let last = min(through, until ?? through)
        var out: [LocalDate] = []
        var week = weekStart
        while week <= last {
            for offset in 0..<7 where days.contains(offset) {
                let date = week.adding(days: offset)
                guard date >= startDate else { continue }
                guard date <= last else { return out }
                out.append(date)
                if let count, out.count >= count { return out }
            }
            week = week.adding(days: 7 * interval)
        }
        return out
    }

    /// The first date the rule produces (nil if none).
    var firstDate: LocalDate? {
        dates(through: startDate.adding(days: 7 * interval + 7)).first
    }

    /// The rule's last date, when it has one (UNTIL or COUNT).
    var lastDate: LocalDate? {
        if let count {
            // At least one occurrence per `interval` weeks.
            let all = dates(through: startDate.adding(days: 7 * interval * (count + 1)))
            return all.last.map { d in until.map { min($0, d) } ?? d }
        }
        return until
    }

    /// Whether `date` is one of the rule's dates.
    func contains(_ date: LocalDate) -> Bool {
        guard date >= startDate, byDay.contains(date.weekday), until.map({ date <= $0 }) ?? true else { return false }
        let weeks = (date.adding(days: -date.weekday.index).dayNumber - startDate.adding(days: -startDate.weekday.index).dayNumber) / 7
        guard weeks % interval == 0 else { return false }
        if count != nil { return dates(through: date).last == date }
        return true
    }

    /// The instant `time` on `date` is in the zone. RFC 5545 §3.3.5: a time that does not exist
    /// (the spring-forward gap) is read with the offset before the gap (02:30 → 03:30 EDT); a time
    /// that occurs twice (fall back) is the first of the two.
    func instant(on date: LocalDate) -> Date { Self.instant(date, time, in: zone) }

    static func instant(_ date: LocalDate, _ time: LocalTime, in zone: TimeZone) -> Date {
        let wall = TimeInterval(date.dayNumber * 86_400 + time.secondsIntoDay)
        let before = zone.secondsFromGMT(for: Date(timeIntervalSince1970: wall - 86_400))
        let after = zone.secondsFromGMT(for: Date(timeIntervalSince1970: wall + 86_400))
        let candidates = [before, after].map { wall - TimeInterval($0) }.filter { utc in
            TimeInterval(zone.secondsFromGMT(for: Date(timeIntervalSince1970: utc))) == wall - utc
        }
        if let first = candidates.min() { return Date(timeIntervalSince1970: first) }
        return Date(timeIntervalSince1970: wall - TimeInterval(before)) // in the gap
    }

    /// The RRULE value: `FREQ=WEEKLY;WKST=MO;BYDAY=MO,WE[;INTERVAL=2][;UNTIL=…Z|;COUNT=n]`.
    var rrule: String {
        var parts = ["FREQ=WEEKLY", "WKST=MO", "BYDAY=" + byDay.map(\.rawValue).joined(separator: ",")]
        if interval > 1 { parts.append("INTERVAL=\(interval)") }
        // With a zoned DTSTART, UNTIL is in UTC (RFC 5545 §3.3.10): the last date's start instant.
        if let until { parts.append("UNTIL=" + Self.utcStamp(instant(on: until))) }
        else if let count { parts.append("COUNT=\(count)") }
        return parts.joined(separator: ";")
    }

    static func utcStamp(_ date: Date) -> String {
        let t = Int(date.timeIntervalSince1970)
        let day = LocalDate(dayNumber: t >= 0 ? t / 86_400 : (t - 86_399) / 86_400)
        let s = ((t % 86_400) + 86_400) % 86_400
        return day.compact + String(format: "T%02d%02d%02dZ", s / 3600, s % 3600 / 60, s % 60)
    }

    /// "Mondays and Wednesdays", "Tuesdays, Thursdays and Saturdays".
    static func list(_ days: [Weekday]) -> String {
        let names = days.sorted { $0.index < $1.index }.map(\.plural)
        guard names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " and " + names.last!
    }

    /// "Mondays and Wednesdays at 7:30 AM EST" (every other week: "Every other week on …"), as of `at`.
    func pattern(at instant: Date) -> String {
        let when = Self.list(byDay) + " at " + TimeFormatting.time(instant, zoneID: zoneID)
        switch interval {
        case 1: return when
        case 2: return "Every other week on " + when
        default: return "Every \(interval) weeks on " + when
        }
    }

    /// The same pattern for someone in `memberZone`, from the occurrence at `instant`:
    /// "6:00 PM IST for you", or, when their local day differs, "Tuesdays and Thursdays at 6:00 AM
    /// AEDT for you (the next day where you are)". Notes when a clock change on either side moves
    /// the member's time during the next year. nil when the zones are the same.
    func memberPattern(at instant: Date, memberZone memberID: String) -> String? {
        guard let member = TimeZone(identifier: memberID), memberID != zoneID else { return nil }
        let shift = LocalDate(instant, in: member).dayNumber - LocalDate(instant, in: zone).dayNumber
        var text = TimeFormatting.time(instant, zoneID: memberID) + " for you"
        if shift != 0 {
            text = Self.list(byDay.map { $0.shifted(by: shift) }) + " at " + text
                + (shift > 0 ? " (the next day where you are)" : " (the day before where you are)")
        }
        let difference = { (t: Date) in member.secondsFromGMT(for: t) - self.zone.secondsFromGMT(for: t) }
        let now = difference(instant)
        if stride(from: 30, through: 365, by: 30).contains(where: { difference(instant.addingTimeInterval(Double($0) * 86_400)) != now }) {
            text += "; it moves when the clocks change in one of the two places"
        }
        return text
    }
}
