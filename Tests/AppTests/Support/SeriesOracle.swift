import Foundation
@testable import App

/// scripts/oracles/series_oracle.py: python-dateutil's rrule, and PyPI icalendar +
/// recurring-ical-events reading our feed.
enum SeriesOracle {
    static var available: Bool { PythonOracle.available }

    static func run(_ arguments: [String], input: Data) async throws -> Any {
        try JSONSerialization.jsonObject(with: try await PythonOracle.run("series_oracle.py", arguments: arguments, input: input))
    }

    /// UTC instants ("2026-03-09T12:30:00Z") of each rule, expanded by dateutil.
    static func expand(_ rules: [[String: Any]]) async throws -> [[String]] {
        try await run(["rrule"], input: try JSONSerialization.data(withJSONObject: rules)) as? [[String]] ?? []
    }

    /// The feed as icalendar + recurring-ical-events read it, between two UTC instants.
    static func feed(_ ics: String, from: Date, to: Date) async throws -> [String: Any] {
        try await run(["feed", ISO8601.string(from), ISO8601.string(to)], input: Data(ics.utf8)) as? [String: Any] ?? [:]
    }
}
