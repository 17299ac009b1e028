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

    /// A notice prepared once (shared values bound) and filled per recipient renders exactly what
    /// the plain algorithm does: fill the layout, the body in place of `<!--BODY-->`, text + footer.
    /// Fixed expectations for filling (not one fill against another): a line with a slot that has no
    /// value (missing, nil or empty) is left out whole — first, middle or last — with its line break;
    /// everything else is copied as written, non-ASCII included; HTML escaping only where asked.
    @Test func fillLeavesOutLinesWithoutAValueAndCopiesTheRestAsWritten() {
        let t = EmailTemplates.Compiled("{{gone}} first\nHi {{name}}!\n\n{{ gone }}\nmiddle {{empty}}\nend {{name}} ✓\n{{missing}}")
        let values: [String: String?] = ["name": "Zoë <&>", "gone": nil, "empty": ""]
        #expect(EmailTemplates.fill(t, values, escape: false) == "Hi Zoë <&>!\n\nend Zoë <&> ✓")
        #expect(EmailTemplates.fill(t, values, escape: true) == "Hi Zoë &lt;&amp;&gt;!\n\nend Zoë &lt;&amp;&gt; ✓")
        var out = ""
        EmailTemplates.fill(.init("{{subject}} — {{name}}\n{{subject}}"), values, subject: "Live: Yoga", escape: false, into: &out)
        #expect(out == "Live: Yoga — Zoë <&>\nLive: Yoga")
        out = ""
        EmailTemplates.fill(.init("{{subject}}\nkept"), values, subject: "", escape: false, into: &out)
        #expect(out == "kept")
        #expect(EmailTemplates.fill(.init(""), values, escape: false) == "")
        #expect(EmailTemplates.fill(.init("{{gone}}"), values, escape: false) == "")
    }

    @Test func preparedTemplatesMatchOneShotFilling() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Resources/Templates").path
        let templates = try EmailTemplates(directory: dir)
        func read(_ name: String) throws -> String { try String(contentsOfFile: dir + "/" + name, encoding: .utf8) }
        let subjects = try read("subjects.txt").split(separator: "\n").filter { !$0.hasPrefix("#") }
        for kind in EmailTemplates.kinds {
            let subjectLine = try #require(subjects.first { $0.hasPrefix(kind + " ") || $0.hasPrefix(kind + "=") })
            let subjectTemplate = String(subjectLine.split(separator: "=", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces)
            for variant in 0..<3 {
                let shared: [String: String?] = [
                    "creatorName": "Ana <Coach> & \"Co\"", "title": variant == 1 ? "HIIT 🏋️ {{memberName}}" : "Morning flow",
                    "workoutType": variant == 2 ? nil : "yoga", "streamURL": "https://fit.example.com/live/s1",
                    "startCreatorZone": "March 8, 2026 at 7:30 AM EST", "googleCalendarURL": variant == 0 ? "https://calendar.google.com/x?a=1&b=2" : nil,
                ]
                let recipient: [String: String?] = [
                    "memberName": variant == 2 ? "" : "Zoë", "unsubscribeURL": "https://api.example.com/api/unsubscribe/t.k",
                    "startMemberZone": "March 8, 2026 at 1:30 PM CET", "memberZone": "Europe/Paris",
                    "previousStartMemberZone": variant == 0 ? "March 7, 2026 at 1:30 PM CET" : nil,
                ]
                var all = shared.merging(recipient) { a, _ in a }
                let subject = EmailTemplates.fill(.init(subjectTemplate), all, escape: false)
                all["subject"] = subject
                let layout = EmailTemplates.fill(.init(try read("layout.html")), all, escape: true)
                let body = EmailTemplates.fill(.init(try read("\(kind).html")), all, escape: true)
                let expectedHTML = layout.replacingOccurrences(of: "<!--BODY-->", with: body)
                let expectedText = EmailTemplates.fill(.init(try read("\(kind).txt")), all, escape: false)
                    + EmailTemplates.fill(.init(try read("footer.txt")), all, escape: false)

                let prepared = try #require(templates.prepare(kind: kind, shared: shared))
                let got = templates.render(prepared, values: recipient)
                #expect(got.subject == subject, "\(kind) \(variant)")
                #expect(got.html == expectedHTML, "\(kind) \(variant)")
                #expect(got.text == expectedText, "\(kind) \(variant)")
                // The same notice again comes from the cache and renders the same.
                #expect(templates.render(try #require(templates.prepare(kind: kind, shared: shared)), values: recipient).html == expectedHTML)
                #expect(got.html.contains("Ana &lt;Coach&gt; &amp; &quot;Co&quot;"))
            }
        }
    }
}

/// RandomID replaces Foundation's UUID() on hot paths: it must still make version-4 UUIDs, all distinct.
@Suite struct RandomIDTests {
    @Test func version4UUIDsAllDistinctAndHexOfTheAskedLength() {
        let ids = (0..<20_000).map { _ in RandomID.uuid() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(500) {
            let s = id.uuidString
            #expect(s[s.index(s.startIndex, offsetBy: 14)] == "4")
            #expect("89AB".contains(s[s.index(s.startIndex, offsetBy: 19)]))
            #expect(UUID(uuidString: s) == id)
        }
        let hex = (0..<2_000).map { _ in RandomID.hex(bytes: 4) }
        #expect(hex.allSatisfy { $0.count == 8 && $0.allSatisfy(\.isHexDigit) && $0 == $0.lowercased() })
        #expect(Set(hex).count > 1_990) // 32 random bits: a handful of collisions at most
        // Every byte position varies (no stuck bytes from the 8-byte chunking).
        let columns = (0..<16).map { k in Set(ids.prefix(200).map { withUnsafeBytes(of: $0.uuid) { $0[k] } }).count }
        #expect(columns.allSatisfy { $0 > 2 }, "\(columns)")
    }
}

/// The unsubscribe token's base64url is written by hand (it runs for every email): it must match
/// RFC 4648 §5 without padding, as Foundation's base64 with the two letters swapped and '=' dropped.
@Suite struct Base64URLTests {
    @Test func matchesFoundationsBase64WithTheURLAlphabetAndNoPadding() {
        var rng = SystemRandomNumberGenerator()
        for length in 0..<80 {
            for _ in 0..<25 {
                let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
                let reference = Data(bytes).base64EncodedString()
                    .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
                let mine = UnsubscribeTokens.b64url(bytes)
                #expect(mine == reference, "\(bytes)")
                #expect(UnsubscribeTokens.unb64url(mine) == bytes)
            }
        }
        #expect(UnsubscribeTokens.b64url([0xfb, 0xff]) == "-_8")
    }
}
