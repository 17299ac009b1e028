import Fluent
import Vapor

/// Development only: a creator and members in different time zones, and a dev JWT for each.
enum DemoData {
    static let users: [ImportRequest.UserInput] = [
        .init(id: "demo-creator", name: "Casey Coach", email: "casey.coach@example.com", timezone: "America/New_York", role: "creator", isActive: true),
        .init(id: "demo-member-london", name: "Lee London", email: "lee@example.com", timezone: "Europe/London", role: "member", isActive: true),
        .init(id: "demo-member-kolkata", name: "Priya Kolkata", email: "priya@example.com", timezone: "Asia/Kolkata", role: "member", isActive: true),
        .init(id: "demo-member-sydney", name: "Sam Sydney", email: "sam@example.com", timezone: "Australia/Sydney", role: "member", isActive: true),
    ]

    static func seed(_ app: Application) async throws {
        let members = users.filter { $0.role == "member" }
        let request = ImportRequest(
            users: users,
            follows: members.map { .init(followerId: $0.id, followedId: "demo-creator") },
            subscriptions: [.init(memberId: "demo-member-kolkata", creatorId: "demo-creator", status: "active")]
        )
        _ = try await MemberImporter(db: app.db, uids: app.deps.uids, now: app.deps.clock.now()).run(request)
    }

    /// Printed at startup in development only; production never prints secrets.
    static func printTokens(_ app: Application) async throws {
        let lifetime = app.deps.config.jwt.maxAgeSeconds
        var lines = ["Development tokens (valid \(Int(lifetime / 86_400)) days, JWT_MAX_AGE_SECONDS; signed with the dev secret in data/dev-secrets.json):"]
        for u in users {
            let token = try await app.deps.jwt.sign(userID: u.id, expiresIn: lifetime)
            lines.append("  \(u.id) (\(u.role ?? "member"), \(u.timezone ?? "-")):\n    \(token)")
        }
        if let admin = app.deps.config.adminAPIKey { lines.append("  admin API key: \(admin)") }
        print(lines.joined(separator: "\n"))
    }
}
