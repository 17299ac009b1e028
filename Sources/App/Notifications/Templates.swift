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

    static let kinds = Set(NotificationKind.allCases.map(\.template)).sorted()

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

    /// One notice's templates with every value that is the same for all its recipients already in
    /// place (creator, title, stream link…); only the recipient's slots are filled per email.
    struct Prepared: Sendable {
        let subject: Compiled, text: Compiled, footer: Compiled, body: Compiled
        /// The layout before and after `<!--BODY-->` (nil: no body slot).
        let layout: (before: Compiled, after: Compiled?)
    }

    /// Prepared notices by kind and shared values; a fan-out renders thousands of emails from one.
    private let cache = BoundedCache<PreparedKey, Prepared>(limit: 256)
    struct PreparedKey: Hashable, Sendable { let kind: String; let shared: [String: String?] }

    /// `shared`: the values every recipient of one notice gets; prepared once per notice and kept.
    func prepare(kind: String, shared: [String: String?]) -> Prepared? {
        let key = PreparedKey(kind: kind, shared: shared)
        if let hit = cache.get(key) { return hit }
        guard let t = templates[kind] else { return nil }
        let layout = self.layout.binding(shared, escape: true)
        let prepared = Prepared(
            subject: t.subject.binding(shared, escape: false), text: t.text.binding(shared, escape: false),
            footer: footerText.binding(shared, escape: false), body: t.html.binding(shared, escape: true),
            layout: layout.split(at: "<!--BODY-->").map { ($0.0, $0.1) } ?? (layout, nil))
        cache.put(key, prepared)
        return prepared
    }

    /// Fills a prepared notice for one recipient (`values`: the slots `shared` did not fill).
    func render(_ p: Prepared, values: [String: String?]) -> Rendered {
        let subject = Self.fill(p.subject, values, escape: false)
        var html = "", text = ""
        html.reserveCapacity(4_096)
        text.reserveCapacity(2_048)
        Self.fill(p.layout.before, values, subject: subject, escape: true, into: &html)
        if let after = p.layout.after {
            Self.fill(p.body, values, subject: subject, escape: true, into: &html)
            Self.fill(after, values, subject: subject, escape: true, into: &html)
        }
        Self.fill(p.text, values, subject: subject, escape: false, into: &text)
        Self.fill(p.footer, values, subject: subject, escape: false, into: &text)
        return Rendered(subject: subject, text: text, html: html)
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

        init(lines: [[Piece]]) { self.lines = lines }

        /// Fills the slots named in `values` (a line whose slot has no value is left out, as in
        /// `fill`); every other slot stays for a later fill. Binding then filling = one fill of both.
        func binding(_ values: [String: String?], escape: Bool) -> Compiled {
            Compiled(lines: lines.compactMap { line in
                var pieces: [Piece] = []
                for piece in line {
                    guard case .slot(let name) = piece, let bound = values[name] else { pieces.append(piece); continue }
                    guard let value = bound, !value.isEmpty else { return nil }
                    pieces.append(.text(escape ? HTML.escape(value) : value))
                }
                return pieces
            })
        }

        /// The template before and after the first `marker` in its text (nil if it has none).
        func split(at marker: String) -> (Compiled, Compiled)? {
            for (i, line) in lines.enumerated() {
                for (j, piece) in line.enumerated() {
                    guard case .text(let t) = piece, let r = t.firstRange(of: marker) else { continue }
                    let head = Array(line[..<j]) + (r.lowerBound > t.startIndex ? [.text(String(t[..<r.lowerBound]))] : [])
                    let tail = (r.upperBound < t.endIndex ? [Piece.text(String(t[r.upperBound...]))] : []) + Array(line[(j + 1)...])
                    return (Compiled(lines: Array(lines[..<i]) + [head]), Compiled(lines: [tail] + Array(lines[(i + 1)...])))
                }
            }
            return nil
        }
    }

    /// A line with a slot that has no value is left out.
    static func fill(_ template: Compiled, _ values: [String: String?], escape: Bool) -> String {
        var out = ""
        fill(template, values, escape: escape, into: &out)
        return out
    }

    /// Appends the filled template to `out`; `subject`, when given, is the value of the `{{subject}}`
    /// slot. Built as a string from strings (no bytes to validate as UTF-8 again afterwards): a line
    /// is checked for a missing value before any of it is written.
    static func fill(_ template: Compiled, _ values: [String: String?], subject: String? = nil, escape: Bool, into out: inout String) {
        func value(_ name: String) -> String? {
            guard let v = (subject != nil && name == "subject" ? subject : values[name] ?? nil), !v.isEmpty else { return nil }
            return v
        }
        var first = true
        var slots: [String] = [] // the line's slot values, each looked up once
        lineLoop: for line in template.lines {
            slots.removeAll(keepingCapacity: true)
            for piece in line {
                guard case .slot(let name) = piece else { continue }
                guard let v = value(name) else { continue lineLoop }
                slots.append(v)
            }
            if !first { out.append("\n") }
            var next = 0
            for piece in line {
                switch piece {
                case .text(let t): out.append(t)
                case .slot:
                    out.append(escape ? HTML.escape(slots[next]) : slots[next])
                    next += 1
                }
            }
            first = false
        }
    }
}
