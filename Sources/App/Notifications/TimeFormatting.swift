import Foundation

/// "March 8, 2026 at 3:30 AM EDT": the start time as people in `zone` read it.
enum TimeFormatting {
    static func format(_ date: Date, zoneID: String) -> String {
        // A fan-out formats one start time in a handful of zones thousands of times: remembered.
        let key = FormatKey(date: date, zoneID: zoneID)
        if let hit = formatted.get(key) { return hit }
        let text = formatNow(date, zoneID: zoneID)
        formatted.put(key, text)
        return text
    }

    private struct FormatKey: Hashable, Sendable { let date: Date; let zoneID: String }
    private static let formatted = BoundedCache<FormatKey, String>(limit: 4096)

    private static func formatNow(_ date: Date, zoneID: String) -> String {
        let calendar = calendars.calendar(zoneID)
        // "MMMM d, yyyy 'at' h:mm a" by hand: a DateFormatter per email was the fan-out's hot spot.
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        let month = monthNames[max(0, min(11, (c.month ?? 1) - 1))]
        return "\(month) \(c.day ?? 1), \(c.year ?? 1970) at " + clockTime(c, calendar: calendar, zoneID: zoneID, at: date)
    }

    /// "7:30 AM EST"
    static func time(_ date: Date, zoneID: String) -> String {
        let calendar = calendars.calendar(zoneID)
        return clockTime(calendar.dateComponents([.hour, .minute], from: date), calendar: calendar, zoneID: zoneID, at: date)
    }

    private static func clockTime(_ c: DateComponents, calendar: Calendar, zoneID: String, at date: Date) -> String {
        let hour24 = c.hour ?? 0, minute = c.minute ?? 0
        let hour12 = hour24 % 12 == 0 ? 12 : hour24 % 12
        return "\(hour12):\(minute < 10 ? "0" : "")\(minute) \(hour24 < 12 ? "AM" : "PM") " + zoneLabel(calendar.timeZone, id: zoneID, at: date)
    }

    /// "Monday"
    static func weekday(_ date: Date, zoneID: String) -> String {
        let day = calendars.calendar(zoneID).component(.weekday, from: date)
        return weekdayNames[max(0, min(6, day - 1))]
    }

    /// "March 9"
    static func monthDay(_ date: Date, zoneID: String) -> String {
        let c = calendars.calendar(zoneID).dateComponents([.month, .day], from: date)
        return "\(monthNames[max(0, min(11, (c.month ?? 1) - 1))]) \(c.day ?? 1)"
    }

    private static let weekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    private static let monthNames = ["January", "February", "March", "April", "May", "June", "July", "August",
                                     "September", "October", "November", "December"]

    /// Gregorian calendars per zone id (unknown ids read as UTC), built once.
    private static let calendars = CalendarCache()

    private final class CalendarCache: @unchecked Sendable {
        private let lock = NSLock()
        private var byZone: [String: Calendar] = [:]
        func calendar(_ id: String) -> Calendar {
            if let hit = lock.withLock({ byZone[id] }) { return hit }
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: id) ?? TimeZone(identifier: "UTC")!
            lock.withLock { if byZone.count < 1000 { byZone[id] = calendar } }
            return calendar
        }
    }

    /// The abbreviation the tz database gives the zone (EDT, BST, AEDT, IST, NDT, UTC — the
    /// names Python's zoneinfo and `date` print), or `GMT+5:45` where the database has only a
    /// number (Asia/Kathmandu "+0545", Australia/Lord_Howe "+1030"). Foundation's own short
    /// names depend on the locale (en_US_POSIX says "GMT+1" for BST), hence the tz data.
    static func zoneLabel(_ zone: TimeZone, id: String, at date: Date) -> String {
        let offset = zone.secondsFromGMT(for: date)
        // The id as given: Foundation reports "UTC" as "GMT".
        if let rule = TZRule.forZone(TimeZone(identifier: id) == nil ? "UTC" : id), let name = rule.name(forOffset: offset), name.allSatisfy(\.isLetter) {
            return name
        }
        if offset == 0 { return "GMT" }
        let sign = offset < 0 ? "-" : "+"
        let hours = abs(offset) / 3600, minutes = abs(offset) % 3600 / 60
        return minutes == 0 ? "GMT\(sign)\(hours)" : String(format: "GMT%@%d:%02d", sign, hours, minutes)
    }
}

/// The POSIX TZ rule at the end of a TZif (v2+) file, e.g. `EST5EDT,M3.2.0,M11.1.0` or
/// `<+0545>-5:45`: the zone's current standard and daylight names and offsets.
struct TZRule: Sendable {
    let standard: (name: String, offset: Int)
    let daylight: (name: String, offset: Int)?

    func name(forOffset offset: Int) -> String? {
        if offset == standard.offset { return standard.name }
        if let daylight, offset == daylight.offset { return daylight.name }
        return nil
    }

    private static let cache = Cache()
    static let zoneinfoDirectory = "/usr/share/zoneinfo"

    static func forZone(_ id: String) -> TZRule? {
        if let hit = cache.get(id) { return hit }
        guard !id.contains(".."), let data = FileManager.default.contents(atPath: zoneinfoDirectory + "/" + id),
              data.starts(with: Array("TZif".utf8)), data.last == 10 else { return nil }
        let body = data.dropLast()
        guard let start = body.lastIndex(of: 10) else { return nil }
        let rule = parse(String(decoding: body[(start + 1)...], as: UTF8.self))
        if let rule { cache.set(id, rule) }
        return rule
    }

    static func parse(_ s: String) -> TZRule? {
        var rest = Substring(s)
        func name() -> String? {
            if rest.first == "<" {
                guard let close = rest.firstIndex(of: ">") else { return nil }
                defer { rest = rest[rest.index(after: close)...] }
                return String(rest[rest.index(after: rest.startIndex)..<close])
            }
            let letters = rest.prefix { $0.isLetter }
            guard letters.count >= 3 else { return nil }
            rest = rest.dropFirst(letters.count)
            return String(letters)
        }
        /// POSIX offsets are west-positive: "EST5" is UTC−5. Returns seconds east of UTC.
        func offset() -> Int? {
            let text = rest.prefix { "+-0123456789:".contains($0) }
            guard !text.isEmpty else { return nil }
            rest = rest.dropFirst(text.count)
            var sign = 1
            var t = Substring(text)
            if t.first == "-" { sign = -1; t = t.dropFirst() } else if t.first == "+" { t = t.dropFirst() }
            let parts = t.split(separator: ":").compactMap { Int($0) }
            guard !parts.isEmpty else { return nil }
            let seconds = parts[0] * 3600 + (parts.count > 1 ? parts[1] * 60 : 0) + (parts.count > 2 ? parts[2] : 0)
            return -sign * seconds
        }
        guard let stdName = name(), let stdOffset = offset() else { return nil }
        var daylight: (String, Int)?
        if !rest.isEmpty, rest.first != ",", let dstName = name() {
            daylight = (dstName, rest.first == "," || rest.isEmpty ? stdOffset + 3600 : (offset() ?? stdOffset + 3600))
        }
        return TZRule(standard: (stdName, stdOffset), daylight: daylight)
    }

    private final class Cache: @unchecked Sendable {
        private let lock = NSLock()
        private var rules: [String: TZRule] = [:]
        func get(_ id: String) -> TZRule? { lock.withLock { rules[id] } }
        func set(_ id: String, _ rule: TZRule) { lock.withLock { rules[id] = rule } }
    }
}
