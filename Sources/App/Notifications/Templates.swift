import Foundation
import Mailer

/// Email templates, loaded once from Resources/Templates. `{{name}}` placeholders; a line whose
/// placeholder has no value (e.g. no workout type) is left out entirely. HTML templates get
/// every value escaped.
struct EmailTemplates: Sendable {
    struct Pair: Sendable { let subject: String; let text: String; let html: String }
    private let templates: [String: Pair]
    private let layout: String
    private let footerText: String

    static let kinds = NotificationKind.allCases.map(\.rawValue)

    init(directory: String) throws {
        func read(_ name: String) throws -> String {
            let path = directory + "/" + name
            guard let data = FileManager.default.contents(atPath: path) else { throw TemplateError.missing(path) }
            return String(decoding: data, as: UTF8.self)
        }
        var subjects: [String: String] = [:]
        for line in try read("subjects.txt").split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { subjects[parts[0].trimmingCharacters(in: .whitespaces)] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        var pairs: [String: Pair] = [:]
        for kind in Self.kinds {
            guard let subject = subjects[kind] else { throw TemplateError.missing("subjects.txt: \(kind)") }
            pairs[kind] = Pair(subject: subject, text: try read("\(kind).txt"), html: try read("\(kind).html"))
        }
        templates = pairs
        layout = try read("layout.html")
        footerText = try read("footer.txt")
    }

    enum TemplateError: Error, CustomStringConvertible {
        case missing(String)
        var description: String { switch self { case .missing(let what): "email template missing: \(what)" } }
    }

    struct Rendered: Sendable { let subject: String; let text: String; let html: String }

    func render(kind: String, values: [String: String?]) -> Rendered? {
        guard let t = templates[kind] else { return nil }
        let subject = Self.fill(t.subject, values, escape: false)
        var all = values
        all["subject"] = subject
        var html = Self.fill(layout, all, escape: true)
        if let slot = html.firstRange(of: "<!--BODY-->") { html.replaceSubrange(slot, with: Self.fill(t.html, all, escape: true)) }
        return Rendered(
            subject: subject,
            text: Self.fill(t.text, all, escape: false) + Self.fill(footerText, all, escape: false),
            html: html
        )
    }

    static func fill(_ template: String, _ values: [String: String?], escape: Bool) -> String {
        var out = ""
        out.reserveCapacity(template.utf8.count + 256)
        var firstLine = true
        lineLoop: for line in template.split(separator: "\n", omittingEmptySubsequences: false) {
            var result = ""
            var rest = line[...]
            // Standard-library search, not NSString's: this runs for every email.
            while let open = rest.firstRange(of: "{{") {
                result += rest[..<open.lowerBound]
                guard let close = rest[open.upperBound...].firstRange(of: "}}") else { rest = rest[open.lowerBound...]; break }
                let name = String(rest[open.upperBound..<close.lowerBound]).trimmingCharacters(in: .whitespaces)
                guard let value = values[name] ?? nil, !value.isEmpty else { continue lineLoop }
                result += escape ? HTML.escape(value) : value
                rest = rest[close.upperBound...]
            }
            result += rest
            if !firstLine { out += "\n" }
            firstLine = false
            out += result
        }
        return out
    }
}
