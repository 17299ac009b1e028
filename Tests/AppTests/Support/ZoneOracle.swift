import Foundation

/// Python's zoneinfo (scripts/oracles/zone_format.py), the independent check for start times.
enum ZoneOracle {
    struct Answer { let local: String; let tzname: String; let offset: Int }

    static var available: Bool { PythonOracle.available }

    static func format(_ cases: [(epoch: Int, zone: String)]) async throws -> [Answer] {
        let input = Data(cases.map { "{\"epoch\": \($0.epoch), \"zone\": \"\($0.zone)\"}\n" }.joined().utf8)
        let lines = String(decoding: try await PythonOracle.run("zone_format.py", input: input), as: UTF8.self).split(separator: "\n")
        return try lines.map {
            let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return Answer(local: o["local"] as! String, tzname: o["tzname"] as! String, offset: o["offset"] as! Int)
        }
    }

    /// What our emails must print for that answer: the tz abbreviation, or GMT±h[:mm] where it is numeric.
    static func expected(_ a: Answer) -> String {
        if a.tzname.allSatisfy(\.isLetter) { return a.local + " " + a.tzname }
        if a.offset == 0 { return a.local + " GMT" }
        let h = abs(a.offset) / 3600, m = abs(a.offset) % 3600 / 60, sign = a.offset < 0 ? "-" : "+"
        return a.local + " " + (m == 0 ? "GMT\(sign)\(h)" : String(format: "GMT%@%d:%02d", sign, h, m))
    }
}
