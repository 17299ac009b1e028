import Foundation

/// RFC 5545 calendar objects for stream invitations and schedule feeds: VEVENTs in UTC, or in a
/// zone (TZID, with a VTIMEZONE per zone) for recurring series, text escaped, lines folded at 75
/// octets without splitting a UTF-8 character, CRLF line ends.
public struct CalendarEvent: Sendable, Equatable {
    public var uid: String
    public var sequence: Int
    public var start: Date
    public var end: Date
    public var summary: String
    public var description: String?
    public var url: String?
    public var stamp: Date
    /// An IANA zone: DTSTART/DTEND (and EXDATE, RECURRENCE-ID) in its local time with TZID.
    public var tzid: String? = nil
    /// An RRULE value (a recurring series).
    public var rrule: String? = nil
    /// Occurrences left out of the rule (same time of day as `start`, in `tzid`).
    public var exdates: [Date] = []
    /// This event overrides the series occurrence that was due at this instant.
    public var recurrenceID: Date? = nil
    /// STATUS:CANCELLED for this event even in a PUBLISH calendar (a cancelled override).
    public var cancelled = false

    public init(uid: String, sequence: Int, start: Date, end: Date, summary: String, description: String? = nil, url: String? = nil, stamp: Date) {
        self.uid = uid; self.sequence = sequence; self.start = start; self.end = end
        self.summary = summary; self.description = description; self.url = url; self.stamp = stamp
    }

    /// A whole VCALENDAR holding this event; `.cancel` also marks it cancelled.
    public func ics(method: MailMessage.Calendar.Method, productID: String = "-//Live Streams//Stream Invitations//EN") -> String {
        Self.calendar([self], method: method, productID: productID)
    }

    /// A VCALENDAR with several events (a schedule feed); `name` sets X-WR-CALNAME.
    /// `zoneIfEmpty`: with no events, that zone's VTIMEZONE (around `at`) keeps the calendar a
    /// valid VCALENDAR, which needs at least one component (RFC 5545 §3.4/§3.6).
    public static func calendar(_ events: [CalendarEvent], method: MailMessage.Calendar.Method, productID: String = "-//Live Streams//Stream Invitations//EN",
                                name: String? = nil, zoneIfEmpty: (id: String, at: Date)? = nil) -> String {
        var lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:" + escape(productID), "CALSCALE:GREGORIAN", "METHOD:" + method.rawValue]
        if let name { lines.append("X-WR-CALNAME:" + escape(name)) }
        // One VTIMEZONE per zone used, covering its events' first start to three years past the last.
        var zones: [String: (from: Date, to: Date)] = [:]
        for e in events {
            guard let id = e.tzid else { continue }
            let first = ([e.start] + e.exdates + (e.recurrenceID.map { [$0] } ?? [])).min()!
            let range = zones[id] ?? (first, e.start)
            zones[id] = (min(range.from, first), max(range.to, e.start))
        }
        if events.isEmpty, let empty = zoneIfEmpty {
            zones[empty.id] = (empty.at.addingTimeInterval(86_400 * 7), empty.at.addingTimeInterval(86_400 * 7))
        }
        for id in zones.keys.sorted() {
            guard let zone = TimeZone(identifier: id), let range = zones[id] else { continue }
            lines += CalendarTimeZone.component(id: id, zone: zone, from: range.from.addingTimeInterval(-86_400 * 7),
                                                to: range.to.addingTimeInterval(86_400 * 366 * 3))
        }
        for e in events {
            let zone = e.tzid.flatMap { TimeZone(identifier: $0) }
            func stamp(_ name: String, _ date: Date) -> String {
                guard let zone, let id = e.tzid else { return name + ":" + utc(date) }
                return name + ";TZID=" + id + ":" + local(date, in: zone)
            }
            lines += ["BEGIN:VEVENT", "UID:" + escape(e.uid), "SEQUENCE:\(e.sequence)", "DTSTAMP:" + utc(e.stamp)]
            if let recurrenceID = e.recurrenceID { lines.append(stamp("RECURRENCE-ID", recurrenceID)) }
            lines += [stamp("DTSTART", e.start), stamp("DTEND", e.end)]
            if let rrule = e.rrule { lines.append("RRULE:" + rrule) }
            if !e.exdates.isEmpty, let zone, let id = e.tzid {
                lines.append("EXDATE;TZID=" + id + ":" + e.exdates.sorted().map { local($0, in: zone) }.joined(separator: ","))
            }
            lines.append("SUMMARY:" + escape(e.summary))
            if let description = e.description { lines.append("DESCRIPTION:" + escape(description)) }
            if let url = e.url { lines.append("URL:" + url) }
            lines += ["STATUS:" + (method == .cancel || e.cancelled ? "CANCELLED" : "CONFIRMED"), "TRANSP:OPAQUE", "END:VEVENT"]
        }
        lines.append("END:VCALENDAR")
        return lines.map(fold).joined(separator: "\r\n") + "\r\n"
    }

    /// `20260308T073000Z`
    public static func utc(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    /// `20261207T073000`: wall-clock time in `zone` (a DATE-TIME with TZID).
    public static func local(_ date: Date, in zone: TimeZone) -> String {
        utc(date.addingTimeInterval(TimeInterval(zone.secondsFromGMT(for: date)))).dropLast().description
    }

    /// TEXT values: backslash, semicolon, comma and newlines escaped (RFC 5545 §3.3.11).
    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.replacingOccurrences(of: "\r\n", with: "\n").unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case ";": out += "\\;"
            case ",": out += "\\,"
            case "\n", "\r": out += "\\n"
            default: if scalar.value >= 32 && scalar.value != 127 { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }

    /// Content lines longer than 75 octets continue on lines starting with a space.
    static func fold(_ line: String) -> String {
        var out = ""
        var used = 0
        for character in line {
            let size = String(character).utf8.count
            if used + size > 75 {
                out += "\r\n "
                used = 1
            }
            out.append(character)
            used += size
        }
        return out
    }
}
