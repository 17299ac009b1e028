import FluentKit
import SQLKit

/// Issue 22: a delivery handed over by the fan-out gets its id before its row is written (the
/// outcome inserts it), so ids must be reservable. PostgreSQL's identity column has its sequence
/// already. A SQLite `INTEGER PRIMARY KEY` takes the largest id + 1, which could be an id reserved
/// and not yet written; with AUTOINCREMENT it takes one above `sqlite_sequence`'s number too, which
/// `DeliveryIDs.reserve` raises. SQLite cannot add AUTOINCREMENT to a table, so the table is
/// rebuilt: the same definition with AUTOINCREMENT, the rows copied, the indexes made again.
struct ReservableDeliveryIDs: AsyncMigration {
    struct Definition: Decodable { let sql: String }

    func prepare(on db: any Database) async throws {
        guard db.sql.dialect.name == "sqlite" else { return }
        try await db.transaction { tx in
            let sql = tx.sql
            guard let table = try await sql.raw("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'")
                .first(decoding: Definition.self)?.sql, !table.contains("AUTOINCREMENT") else { return }
            let indexes = try await sql.raw("""
                SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries' AND sql IS NOT NULL
                """).all(decoding: Definition.self).map(\.sql)
            let key = "\"id\" INTEGER PRIMARY KEY"
            guard let name = table.range(of: "\"deliveries\""), table.contains(key) else { throw UnexpectedDefinition() }
            let rebuilt = table.replacingCharacters(in: name, with: "\"deliveries_rebuilt\"")
                .replacingOccurrences(of: key, with: key + " AUTOINCREMENT")
            try await sql.raw("\(unsafeRaw: rebuilt)").run()
            try await sql.raw("INSERT INTO deliveries_rebuilt SELECT * FROM deliveries").run()
            try await sql.raw("DROP TABLE deliveries").run()
            try await sql.raw("ALTER TABLE deliveries_rebuilt RENAME TO deliveries").run()
            for index in indexes { try await sql.raw("\(unsafeRaw: index)").run() }
        }
    }

    /// The table stays AUTOINCREMENT (ids remain unique either way).
    func revert(on db: any Database) async throws {}

    struct UnexpectedDefinition: Error {}
}
