import Foundation

/// A VTIMEZONE for an IANA zone, from the zone data Foundation has (RFC 5545 §3.6.5): one
/// observance for the offset in force at the start of the range, then one per transition in the
/// range, each with its exact DTSTART (local time before the change), TZOFFSETFROM/TO and TZNAME.
/// Explicit transitions instead of a derived RRULE: always right for the dates covered, whatever
/// the zone's rules did (feeds are regenerated, so the range moves forward with time).
public enum CalendarTimeZone {
    public static func component(id: String, zone: TimeZone, from: Date, to: Date) -> [String] {
        var lines = ["BEGIN:VTIMEZONE", "TZID:" + id]
        let initial = zone.secondsFromGMT(for: from)
        var transitions: [(at: Date, before: Int, after: Int)] = []
        var cursor = from
        while transitions.count < 200, let next = zone.nextDaylightSavingTimeTransition(after: cursor), next <= to {
            let before = zone.secondsFromGMT(for: next.addingTimeInterval(-1)), after = zone.secondsFromGMT(for: next)
            if before != after { transitions.append((next, before, after)) }
            cursor = next
        }
        func observance(_ daylight: Bool, start: String, fromOffset: Int, toOffset: Int, name: String) -> [String] {
            let kind = daylight ? "DAYLIGHT" : "STANDARD"
            return ["BEGIN:" + kind, "DTSTART:" + start, "TZOFFSETFROM:" + offset(fromOffset), "TZOFFSETTO:" + offset(toOffset),
                    "TZNAME:" + name, "END:" + kind]
        }
        // The offset before the first transition, from the beginning of the range.
        let firstStart = CalendarEvent.utc(from.addingTimeInterval(TimeInterval(initial))).dropLast().description
        lines += observance(zone.isDaylightSavingTime(for: from), start: firstStart, fromOffset: transitions.first?.before ?? initial,
                            toOffset: initial, name: abbreviation(zone, at: from))
        for t in transitions {
            // DTSTART is the local time of the change in the offset in force before it.
            let start = CalendarEvent.utc(t.at.addingTimeInterval(TimeInterval(t.before))).dropLast().description
            lines += observance(zone.isDaylightSavingTime(for: t.at), start: start, fromOffset: t.before, toOffset: t.after,
                                name: abbreviation(zone, at: t.at))
        }
        lines.append("END:VTIMEZONE")
        return lines
    }

    /// `-0500`, `+0530`, `+054500` (seconds only when the offset has them).
    static func offset(_ seconds: Int) -> String {
        let sign = seconds < 0 ? "-" : "+"
        let s = abs(seconds)
        let base = sign + String(format: "%02d%02d", s / 3600, s % 3600 / 60)
        return s % 60 == 0 ? base : base + String(format: "%02d", s % 60)
    }

    static func abbreviation(_ zone: TimeZone, at date: Date) -> String {
        let name = zone.abbreviation(for: date) ?? ""
        return name.isEmpty ? offset(zone.secondsFromGMT(for: date)) : name
    }
}
