import Foundation

/// Dates on the wire: ISO 8601 UTC with `Z` and milliseconds (what JavaScript's
/// `toISOString()` prints, as the original Node design did).
enum ISO8601 {
    static func string(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
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
