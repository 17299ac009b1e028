import Foundation
import Testing
@testable import App

/// The hand-written hot-path formatters against Foundation's own.
@Suite struct FormattingTests {
    @Test func iso8601MatchesFoundation() {
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        reference.timeZone = TimeZone(identifier: "UTC")
        var generator = SystemRandomNumberGenerator()
        // Whole milliseconds (what we store and send), across leap years, month ends and 1970.
        var dates = [0, -1, 951_782_400_000, 951_868_799_999, 4_102_444_799_999, 1_772_900_000_123].map { Date(timeIntervalSince1970: Double($0) / 1000) }
        for _ in 0..<20_000 {
            dates.append(Date(timeIntervalSince1970: Double(Int64.random(in: -2_000_000_000_000...4_000_000_000_000, using: &generator)) / 1000))
        }
        for d in dates { #expect(ISO8601.string(d) == reference.string(from: d), "\(d.timeIntervalSince1970)") }
    }

    @Test func startTimesMatchDateFormatter() {
        let zones = ["America/New_York", "Europe/London", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC", "Nowhere/Land"]
        for zone in zones {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: zone) ?? TimeZone(identifier: "UTC")!
            f.dateFormat = "MMMM d, yyyy 'at' h:mm a"
            for i in 0..<2_000 {
                let d = Date(timeIntervalSince1970: 1_767_225_600 + Double(i) * 15_731) // ~1 year, odd minutes
                let ours = TimeFormatting.format(d, zoneID: zone)
                #expect(ours.hasPrefix(f.string(from: d) + " "), "\(zone): \(ours) vs \(f.string(from: d))")
            }
        }
    }
}
