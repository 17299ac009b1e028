import Foundation

/// RFC 5545 calendar objects for stream invitations: one VEVENT, times in UTC, text escaped,
/// lines folded at 75 octets without splitting a UTF-8 character.
public struct CalendarEvent: Sendable, Equatable {
    public var uid: String
    public var sequence: Int
    public var start: Date
    public var end: Date
    public var summary: String
    public var description: String?
    public var url: String?
    public var stamp: Date

    public init(uid: String, sequence: Int, start: Date, end: Date, summary: String, description: String? = nil, url: String? = nil, stamp: Date) {
        self.uid = uid; self.sequence = sequence; self.start = start; self.end = end
        self.summary = summary; self.description = description; self.url = url; self.stamp = stamp
    }

    /// A whole VCALENDAR holding this event; `.cancel` also marks it cancelled.
    public func ics(method: MailMessage.Calendar.Method, productID: String = "-//Live Streams//Stream Invitations//EN") -> String {
        Self.calendar([self], method: method, productID: productID)
    }

    /// A VCALENDAR with several events (a schedule feed); `name` sets X-WR-CALNAME.
    public static func calendar(_ events: [CalendarEvent], method: MailMessage.Calendar.Method, productID: String = "-//Live Streams//Stream Invitations//EN",
                                name: String? = nil) -> String {
        var lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:" + escape(productID), "CALSCALE:GREGORIAN", "METHOD:" + method.rawValue]
        if let name { lines.append("X-WR-CALNAME:" + escape(name)) }
        for e in events {
            lines += ["BEGIN:VEVENT", "UID:" + escape(e.uid), "SEQUENCE:\(e.sequence)", "DTSTAMP:" + utc(e.stamp),
                      "DTSTART:" + utc(e.start), "DTEND:" + utc(e.end), "SUMMARY:" + escape(e.summary)]
            if let description = e.description { lines.append("DESCRIPTION:" + escape(description)) }
            if let url = e.url { lines.append("URL:" + url) }
            lines += ["STATUS:" + (method == .cancel ? "CANCELLED" : "CONFIRMED"), "TRANSP:OPAQUE", "END:VEVENT"]
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
