import Foundation
import Mailer

/// Email templates, loaded once from Resources/Templates. `{{name}}` placeholders; a line whose
/// placeholder has no value (e.g. no workout type) is left out entirely. HTML templates get
/// every value escaped.
struct EmailTemplates: Sendable {
    struct Pair: Sendable { let subject: Compiled; let text: Compiled; let html: Compiled }
    private let templates: [String: Pair]
    private let layout: Compiled
    private let footerText: Compiled

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
            pairs[kind] = Pair(subject: Compiled(subject), text: Compiled(try read("\(kind).txt")), html: Compiled(try read("\(kind).html")))
        }
        templates = pairs
        layout = Compiled(try read("layout.html"))
        footerText = Compiled(try read("footer.txt"))
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

    /// A template split once into lines of literal text and `{{name}}` slots (rendering runs
    /// for every email; scanning the text each time was the fan-out's largest cost).
    struct Compiled: Sendable {
        enum Piece: Sendable { case text(String), slot(String) }
        let lines: [[Piece]]

        init(_ template: String) {
            lines = template.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                var pieces: [Piece] = []
                var rest = line[...]
                while let open = rest.firstRange(of: "{{"), let close = rest[open.upperBound...].firstRange(of: "}}") {
                    if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
                    pieces.append(.slot(String(rest[open.upperBound..<close.lowerBound]).trimmingCharacters(in: .whitespaces)))
                    rest = rest[close.upperBound...]
                }
                if !rest.isEmpty { pieces.append(.text(String(rest))) }
                return pieces
            }
        }
    }

    /// A line with a slot that has no value is left out.
    static func fill(_ template: Compiled, _ values: [String: String?], escape: Bool) -> String {
        var out = ""
        var first = true
        lineLoop: for line in template.lines {
            var result = ""
            for piece in line {
                switch piece {
                case .text(let t): result += t
                case .slot(let name):
                    guard let value = values[name] ?? nil, !value.isEmpty else { continue lineLoop }
                    result += escape ? HTML.escape(value) : value
                }
            }
            if !first { out += "\n" }
            first = false
            out += result
        }
        return out
    }
}
