import FluentKit
import SQLKit

extension Database {
    /// The SQL interface of a Fluent database. Both drivers this service runs on (SQLite and
    /// PostgreSQL) are SQL databases; this is the one place that says so.
    var sql: any SQLDatabase {
        guard let sql = self as? any SQLDatabase else { preconditionFailure("\(type(of: self)) is not an SQL database") }
        return sql
    }
}
