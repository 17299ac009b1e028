import Foundation

/// How a reminder says when the stream starts, from the real time left (not the configured lead):
/// "in 15 minutes", "in 1 hour 30 minutes", "today at 7:30 PM EST", "tomorrow at 7:30 AM EST",
/// "on Monday at 6:00 PM IST", "on March 9 at 7:30 AM EDT" — days in the reader's zone.
enum ReminderWording {
    static func startsIn(_ start: Date, now: Date, zoneID: String) -> String {
        let seconds = start.timeIntervalSince(now)
        guard seconds > 30 else { return "now" }
        let minutes = seconds / 60
        if minutes < 10 { return "in " + amount(max(1, Int(minutes.rounded())), "minute") }
        // To the nearest 5 minutes: a reminder sent 20 seconds after it fell due still says 15.
        if minutes < 57.5 { return "in " + amount(Int((minutes / 5).rounded()) * 5, "minute") }
        if minutes < 180 {
            let quarters = Int((minutes / 15).rounded()) * 15
            let h = quarters / 60, m = quarters % 60
            return "in " + amount(h, "hour") + (m == 0 ? "" : " " + amount(m, "minute"))
        }
        let zone = TimeZone(identifier: zoneID) ?? TimeZone(identifier: "UTC")!
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let days = calendar.dateComponents([.day], from: calendar.startOfDay(for: now), to: calendar.startOfDay(for: start)).day ?? 0
        let time = TimeFormatting.time(start, zoneID: zoneID)
        switch days {
        case ...0: return "today at \(time)"
        case 1: return "tomorrow at \(time)"
        case 2...6: return "on \(TimeFormatting.weekday(start, zoneID: zoneID)) at \(time)"
        default: return "on \(TimeFormatting.monthDay(start, zoneID: zoneID)) at \(time)"
        }
    }

    private static func amount(_ n: Int, _ unit: String) -> String { "\(n) \(unit)\(n == 1 ? "" : "s")" }
}
