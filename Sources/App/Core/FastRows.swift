import FluentPostgresDriver
import FluentSQLiteDriver
import Foundation
import PostgresNIO
import SQLiteNIO
import SQLKit

/// The fan-out's hot statements on PostgreSQL, spoken to PostgresNIO directly: statements of one
/// fixed text whatever the group size (the values travel as arrays), prepared where that is safe,
/// and rows decoded straight into tuples. PostgresKit's `SQLRow` decoding (a `Decoder` per
/// row and a dynamic cast per cell) was a tenth of the server's CPU in a PostgreSQL fan-out, and an
/// unprepared statement is parsed and planned on every run. SQLite keeps the portable SQLKit path.
extension SQLDatabase {
    /// This database as PostgreSQL, or nil (SQLite).
    var postgres: (any PostgresDatabase)? { self as? any PostgresDatabase }
    /// This database as SQLite, or nil (PostgreSQL).
    var sqlite: (any SQLiteDatabase)? { self as? any SQLiteDatabase }
}

/// SQLite's side of the same: a query built with SQLKit, its binds encoded as SQLiteKit encodes
/// them, the rows read by column name without a `Decoder` (SQLKit's row decoding was about a tenth
/// of the server's CPU in a SQLite fan-out too).
extension SQLiteDatabase {
    func rows(_ query: any SQLExpression, sql: any SQLDatabase) async throws -> [SQLiteRow] {
        let (text, binds) = sql.serialize(query)
        let encoder = SQLiteDataEncoder() // the encoder configure.swift's SQLite database uses (the default)
        return try await self.query(text, try binds.map { try encoder.encode($0) })
    }
}

extension SQLiteRow {
    struct UnexpectedValue: Error { let column: String }

    /// A text column (nil when NULL).
    func string(_ name: String) throws -> String? {
        switch column(name) {
        case .text(let s): s
        case .null: nil
        default: throw UnexpectedValue(column: name)
        }
    }

    /// An integer column (nil when NULL).
    func int(_ name: String) throws -> Int? {
        switch column(name) {
        case .integer(let i): i
        case .null: nil
        default: throw UnexpectedValue(column: name)
        }
    }

    func required<T>(_ value: T?, _ name: String) throws -> T {
        guard let value else { throw UnexpectedValue(column: name) }
        return value
    }
}

extension PostgresDatabase {
    /// `body` on one pooled connection (the same one inside a transaction).
    func onConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { conn in conn.eventLoop.makeFutureWithTask { try await body(conn) } }.get()
    }

    /// Runs a statement of fixed text and collects its rows. `prepared`: as a named prepared
    /// statement (parsed once per connection; after five runs PostgreSQL may keep one generic plan
    /// for good). Only for statements whose plan cannot go stale as tables grow — inserts resolved
    /// by their conflict index. A statement that looks rows up (an UPDATE joined to its arrays) goes
    /// unnamed: its text is short and the same every time (cheap to parse), and it is planned for
    /// the table as it is now — a generic plan made while the table was small kept a sequential
    /// scan after it had grown (pg_stat_statements: 168 µs per outcome instead of a few).
    func all<S: PostgresPreparedStatement>(_ statement: S, prepared: Bool, logger: Logger) async throws -> [S.Row] where S.Row: Sendable {
        let unnamed = prepared ? nil : PostgresQuery(unsafeSQL: S.sql, binds: try statement.makeBindings())
        return try await onConnection { conn in
            var rows: [S.Row] = []
            if let unnamed {
                for try await row in try await conn.query(unnamed, logger: logger) { rows.append(try statement.decodeRow(row)) }
            } else {
                for try await row in try await conn.execute(statement, logger: logger) { rows.append(row) }
            }
            return rows
        }
    }

    /// A query built with SQLKit, run without PostgresKit's row decoding: the rows come back as
    /// PostgresNIO rows (decode them as tuples). Nil when a bind is of a type this does not map
    /// (run the query through SQLKit then).
    func rows(_ query: any SQLExpression, sql: any SQLDatabase, logger: Logger) async throws -> [PostgresRow]? {
        let (text, binds) = sql.serialize(query)
        var bindings = PostgresBindings(capacity: binds.count)
        for bind in binds {
            guard Self.append(bind, to: &bindings) else { return nil }
        }
        let q = PostgresQuery(unsafeSQL: text, binds: bindings)
        return try await onConnection { conn in try await conn.query(q, logger: logger).collect() }
    }

    /// The bind types the fast path maps, each as PostgresKit sends it: PostgresNIO's own encodable
    /// types (String, Int, Bool, Date, UUID… — PostgresKit's first choice too), and enums by their text.
    private static func append(_ value: any Encodable & Sendable, to b: inout PostgresBindings) -> Bool {
        switch value {
        case let v as any PostgresThrowingDynamicTypeEncodable:
            do { try b.append(v) } catch { return false }
        case let v as any RawRepresentable:
            guard let raw = v.rawValue as? String else { return false }
            b.append(raw)
        default: return false
        }
        return true
    }
}
