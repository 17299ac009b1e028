import Foundation
import Mailer

/// A series as one iCalendar event: DTSTART (the first class) and DTEND in the series' zone,
/// RRULE, EXDATE for skipped and cancelled dates; occurrences that differ from the rule (moved,
/// retitled) become RECURRENCE-ID overrides in the feed.
enum SeriesCalendar {
    /// What the calendar and the emails need of a series.
    struct Series: Sendable {
        let rule: SeriesRule
        let skipped: Set<LocalDate>
        let revision: Int
        let durationMinutes: Int

        init(rule: SeriesRule, skipped: Set<LocalDate>, revision: Int, durationMinutes: Int) {
            (self.rule, self.skipped, self.revision, self.durationMinutes) = (rule, skipped, revision, durationMinutes)
        }

        init(_ s: ClassSeries) {
            self.init(rule: s.rule, skipped: s.skipped, revision: s.revision, durationMinutes: s.durationMinutes)
        }

        /// "Until March 29, 2027" / "12 classes" (nil: open-ended).
        var endWording: String? {
            if let until = rule.until { return "Until " + TimeFormatting.format(rule.instant(on: until), zoneID: rule.zoneID).components(separatedBy: " at ")[0] }
            if let count = rule.count { return count == 1 ? "One class" : "\(count) classes" }
            return nil
        }

        /// Skipped dates from today: "December 24 and December 31" (nil if none).
        func upcomingSkips(now: Date) -> String? {
            let today = LocalDate(now, in: rule.zone)
            let days = skipped.filter { $0 >= today }.sorted().prefix(20).map { TimeFormatting.monthDay(rule.instant(on: $0), zoneID: rule.zoneID) }
            guard let last = days.last else { return nil }
            return days.count == 1 ? last : days.dropLast().joined(separator: ", ") + " and " + last
        }
    }

    static func uid(_ seriesID: String, host: String) -> String { "series-\(seriesID)@\(host)" }

    /// The series' VEVENT (nil-free: a series without any date still has its first rule date).
    static func event(_ s: Series, uid: String, summary: String, description: String?, url: String?, stamp: Date) -> CalendarEvent {
        let first = s.rule.firstDate ?? s.rule.startDate
        let start = s.rule.instant(on: first)
        var event = CalendarEvent(uid: uid, sequence: s.revision, start: start, end: start.addingTimeInterval(TimeInterval(s.durationMinutes * 60)),
                                  summary: summary, description: description, url: url, stamp: stamp)
        event.tzid = s.rule.zoneID
        event.rrule = s.rule.rrule
        event.exdates = s.skipped.filter { s.rule.contains($0) }.sorted().map { s.rule.instant(on: $0) }
        return event
    }
}
