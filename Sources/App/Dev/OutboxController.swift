import Mailer
import SQLKit
import Vapor

/// `GET /dev/outbox` (development only): the emails EMAIL_TRANSPORT=outbox kept, newest first,
/// each viewable rendered — HTML (sandboxed), text, headers and the .ics — like Mailpit.
struct OutboxController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.get("outbox", use: list)
        routes.get("outbox", ":id", use: show)
    }

    struct Row: Decodable {
        let id: Int64
        let to_address: String
        let subject: String
        let raw: String
        let text_body: String
        let html_body: String?
        let ics: String?
        let created_at: Date
    }

    @Sendable func list(req: Request) async throws -> Response {
        let rows = try await req.db.sql.raw("""
            SELECT id, to_address, subject, raw, text_body, html_body, ics, created_at FROM outbox_messages ORDER BY id DESC LIMIT 200
            """).all(decoding: Row.self)
        let items = rows.map { r in
            "<tr><td>\(ISO8601.string(r.created_at))</td><td>\(HTML.escape(r.to_address))</td><td><a href=\"/dev/outbox/\(r.id)\">\(HTML.escape(r.subject))</a></td>\(r.ics == nil ? "<td></td>" : "<td>📅 .ics</td>")</tr>"
        }.joined()
        return HTMLText.page(title: "Dev outbox", body: """
            <h1>Dev outbox</h1><p>\(rows.count) most recent message(s), newest first. Nothing here was sent.</p>
            <table style="border-collapse:collapse;width:100%"><tr><th align=left>Stored</th><th align=left>To</th><th align=left>Subject</th><th></th></tr>\(items)</table>
            """)
    }

    @Sendable func show(req: Request) async throws -> Response {
        guard let id = req.parameters.get("id", as: Int64.self),
              let r = try await req.db.sql.raw("""
                SELECT id, to_address, subject, raw, text_body, html_body, ics, created_at FROM outbox_messages WHERE id = \(bind: id)
                """).first(decoding: Row.self) else {
            throw APIError.notFound("message_not_found", "No such outbox message")
        }
        let headers = r.raw.components(separatedBy: "\r\n\r\n").first ?? ""
        let html = r.html_body.map { "<h2>HTML</h2><iframe sandbox style=\"width:100%;height:520px;border:1px solid #ddd\" srcdoc=\"\(HTML.escape($0))\"></iframe>" } ?? ""
        let ics = r.ics.map { "<h2>Calendar (.ics)</h2><pre>\(HTML.escape($0))</pre>" } ?? ""
        return HTMLText.page(title: r.subject, body: """
            <p><a href="/dev/outbox">← outbox</a></p><h1>\(HTML.escape(r.subject))</h1><p>To: \(HTML.escape(r.to_address))</p>
            \(html)<h2>Text</h2><pre style="white-space:pre-wrap">\(HTML.escape(r.text_body))</pre>\(ics)
            <h2>Headers</h2><pre style="white-space:pre-wrap">\(HTML.escape(headers))</pre>
            """)
    }
}
