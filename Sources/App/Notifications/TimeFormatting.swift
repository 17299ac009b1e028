import Foundation

/// "March 8, 2026 at 3:30 AM EDT": the start time as people in `zone` read it.
enum TimeFormatting {
    /// Locales whose CLDR data carries the short zone names people actually use
    /// (en_US: EST/PST, en_GB: BST/CET, en_IN: IST, en_AU: AEDT, …). A zone none of them
    /// names falls back to an offset, `GMT+5:45`.
    private static let abbreviationLocales = ["en_US", "en_GB", "en_IN", "en_AU", "en_NZ", "en_CA", "en_IE", "en_ZA", "en_SG", "en_HK", "en_PH"]

    static func format(_ date: Date, zoneID: String) -> String {
        let zone = TimeZone(identifier: zoneID) ?? TimeZone(identifier: "UTC")!
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = zone
        f.dateFormat = "MMMM d, yyyy 'at' h:mm a"
        return f.string(from: date) + " " + zoneLabel(zone, at: date)
    }

    static func zoneLabel(_ zone: TimeZone, at date: Date) -> String {
        if ["UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Zulu", "Zulu", "Universal", "Etc/Universal"].contains(zone.identifier) { return "UTC" }
        let f = DateFormatter()
        f.timeZone = zone
        f.dateFormat = "zzz"
        for id in abbreviationLocales {
            f.locale = Locale(identifier: id)
            let label = f.string(from: date)
            if !label.hasPrefix("GMT") && !label.hasPrefix("UTC") && label.allSatisfy({ $0.isLetter }) { return label }
        }
        // Offset style; "GMT" alone for zero-offset zones such as Africa/Abidjan or Europe/London in winter.
        let seconds = zone.secondsFromGMT(for: date)
        if seconds == 0 { return "GMT" }
        let sign = seconds < 0 ? "-" : "+"
        let hours = abs(seconds) / 3600, minutes = abs(seconds) % 3600 / 60
        return minutes == 0 ? "GMT\(sign)\(hours)" : String(format: "GMT%@%d:%02d", sign, hours, minutes)
    }
}
