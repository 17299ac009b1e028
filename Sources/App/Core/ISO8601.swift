import Foundation

/// Dates on the wire: ISO 8601 UTC with `Z` and milliseconds (what JavaScript's
/// `toISOString()` prints, as the original Node design did).
enum ISO8601 {
    /// `2026-03-08T07:30:00.000Z`, computed directly (every date in every response goes through
    /// here; Foundation's format style was measurable in the schedule benchmark).
    static func string(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded()) // nearest: x.123 s is stored as 0.12299…
        var days = ms / 86_400_000
        var rest = ms % 86_400_000
        if rest < 0 { rest += 86_400_000; days -= 1 }
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        var out = [UInt8]()
        out.reserveCapacity(24)
        func put(_ value: Int64, _ width: Int) {
            var digits = [UInt8](repeating: 48, count: width)
            var v = value
            for i in stride(from: width - 1, through: 0, by: -1) { digits[i] = 48 + UInt8(v % 10); v /= 10 }
            out += digits
        }
        put(year, 4); out.append(45); put(month, 2); out.append(45); put(day, 2); out.append(84)
        put(rest / 3_600_000, 2); out.append(58); put(rest / 60_000 % 60, 2); out.append(58); put(rest / 1000 % 60, 2)
        out.append(46); put(rest % 1000, 3); out.append(90)
        return String(decoding: out, as: UTF8.self)
    }

    /// Accepts `Z` or a numeric offset, with or without fractional seconds; rejects local times.
    static func parse(_ string: String) -> Date? {
        guard string.count <= 40 else { return nil }
        for fractional in [false, true] {
            let f = ISO8601DateFormatter()
            f.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            if let d = f.date(from: string) { return d }
        }
        return nil
    }
}
