import Fluent
import Foundation
import SQLKit
import Testing
import VaporTesting
@testable import App

@Suite struct MemberSyncTests {
    @Test func importIsIdempotentAndKeepsUids() async throws {
        try await TestApp.run { t in
            let users = [TestApp.user("c", role: "creator", timezone: "Asia/Kathmandu"), TestApp.user("a"), TestApp.user("b")]
            let follows: [[String: Any]] = [["followerId": "a", "followedId": "c"], ["followerId": "b", "followedId": "c"], ["followerId": "a", "followedId": "c"]]
            let subs: [[String: Any]] = [["memberId": "a", "creatorId": "c", "status": "active"]]
            let r = try await t.importUsers(users, follows: follows, subscriptions: subs)
            #expect(r.json["users"] as? Int == 3 && r.json["follows"] as? Int == 3 && r.json["subscriptions"] as? Int == 1)
            let before = try await User.query(on: t.app.db).all().reduce(into: [String: Int64]()) { $0[$1.id!] = $1.agoraUid }

            var renamed = users
            renamed[1]["name"] = "Alice Renamed"
            renamed[1]["timezone"] = "Europe/Paris"
            try await t.importUsers(renamed, follows: follows, subscriptions: [["memberId": "a", "creatorId": "c", "status": "cancelled"]])
            let after = try await User.query(on: t.app.db).all().reduce(into: [String: Int64]()) { $0[$1.id!] = $1.agoraUid }
            #expect(before == after)
            let a = try #require(try await User.find("a", on: t.app.db))
            #expect(a.name == "Alice Renamed" && a.timezone == "Europe/Paris")
            #expect(try await Follow.query(on: t.app.db).count() == 2)
            #expect(try await Subscription.query(on: t.app.db).first()?.status == .cancelled)
            #expect(try await Subscription.query(on: t.app.db).count() == 1)
        }
    }

    @Test(arguments: [
        (#"[{"id": "ok", "name": "Ok", "email": "ok@example.com"}, {"id": "bad", "name": "Bad", "email": "ok@example.com", "timezone": "Mars/Olympus"}]"#, "users[1]"),
        (#"[{"id": "ok", "name": "Ok", "email": "not-an-email"}]"#, "users[0]"),
        (#"[{"id": "has space", "name": "Ok", "email": "ok@example.com"}]"#, "users[0]"),
        (#"[{"id": "ok", "name": "", "email": "ok@example.com"}]"#, "users[0]"),
        (#"[{"id": "ok", "name": "Ok", "email": "ok@example.com", "role": "admin"}]"#, "users[0]"),
        (#"[{"id": "ok", "name": "Ok", "email": "ok@example.com"}, {"id": "ok", "name": "Dup", "email": "d@example.com"}]"#, "users[1]"),
    ])
    func oneBadUserRejectsTheWholeImport(usersJSON: String, row: String) async throws {
        let users = try JSONSerialization.jsonObject(with: Data(usersJSON.utf8)) as! [[String: Any]]
        try await TestApp.run { t in
            let r = try await t.send(.POST, "api/admin/import", bearer: t.admin, json: ["users": users])
            #expect(r.status == .badRequest)
            let message = (r.json["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(message.hasPrefix(row), "\(message)")
            #expect(try await User.query(on: t.app.db).count() == 0)
        }
    }

    @Test func badRelationsRejectTheWholeImport() async throws {
        try await TestApp.run { t in
            let users = [TestApp.user("c", role: "creator"), TestApp.user("a")]
            let cases: [([String: Any], String)] = [
                (["follows": [["followerId": "a", "followedId": "c"], ["followerId": "a", "followedId": "nobody"]]], "follows[1]"),
                (["follows": [["followerId": "a", "followedId": "a"]]], "follows[0]"),
                (["subscriptions": [["memberId": "a", "creatorId": "c", "status": "paused"]]], "subscriptions[0]"),
                (["subscriptions": [["memberId": "ghost", "creatorId": "c", "status": "active"]]], "subscriptions[0]"),
            ]
            for (extra, row) in cases {
                var body: [String: Any] = ["users": users]
                body.merge(extra) { $1 }
                let r = try await t.send(.POST, "api/admin/import", bearer: t.admin, json: body)
                #expect(r.status == .badRequest)
                #expect(((r.json["error"] as? [String: Any])?["message"] as? String)?.hasPrefix(row) == true, "\(r.raw)")
                #expect(try await User.query(on: t.app.db).count() == 0)
            }
            // Relations may point at users imported earlier.
            try await t.importUsers(users)
            try await t.importUsers([], follows: [["followerId": "a", "followedId": "c"]])
            #expect(try await Follow.query(on: t.app.db).count() == 1)
        }
    }

    @Test func tenThousandUsersAndFollowsInOneRequest() async throws {
        try await TestApp.run { t in
            let users = [TestApp.user("big-creator", role: "creator")] + (0..<10_000).map { TestApp.user("u\($0)", timezone: "Europe/Berlin") }
            let follows = (0..<10_000).map { ["followerId": "u\($0)", "followedId": "big-creator"] }
            let body = try JSONSerialization.data(withJSONObject: ["users": users, "follows": follows])
            #expect(body.count > 1_000_000) // above the default limit, below the import route's 16 MB
            let r = try await t.send(.POST, "api/admin/import", bearer: t.admin, raw: String(decoding: body, as: UTF8.self))
            #expect(r.status == .ok, "\(r.raw.prefix(300))")
            #expect(r.json["users"] as? Int == 10_001 && r.json["follows"] as? Int == 10_000)
            struct Row: Decodable { let agora_uid: Int64 }
            let uids = try await (t.app.db as! any SQLDatabase).select().column("agora_uid").from("users").all(decoding: Row.self).map(\.agora_uid)
            #expect(uids.count == 10_001)
            #expect(Set(uids).count == 10_001)
            #expect(uids.allSatisfy { (1...Int64(UInt32.max)).contains($0) })
            #expect(try await Follow.query(on: t.app.db).count() == 10_000)
        }
    }

    @Test func uidClashesAreRetried() async throws {
        // The random source repeats itself: 7, 7, 7, 9, 11, …
        let sequence = UIDSequence([7, 7, 7, 9, 7, 11, 13])
        try await TestApp.run(randomUID: { sequence.next() }) { t in
            try await t.importUsers([TestApp.user("first")])
            try await t.importUsers([TestApp.user("second"), TestApp.user("third")])
            let uids = try await User.query(on: t.app.db).all().reduce(into: [String: Int64]()) { $0[$1.id!] = $1.agoraUid }
            #expect(uids == ["first": 7, "second": 9, "third": 11])
        }
    }

    @Test func uniqueIndexIsTheFinalGuard() async throws {
        try await TestApp.run { t in
            try await t.importUsers([TestApp.user("a")])
            let uid = try #require(try await User.find("a", on: t.app.db)).agoraUid
            let sql = t.app.db as! any SQLDatabase
            await #expect(throws: (any Error).self) {
                try await sql.insert(into: "users").columns("id", "name", "email", "role", "is_active", "agora_uid")
                    .values(SQLBind("b"), SQLBind("B"), SQLBind("b@example.com"), SQLBind("member"), SQLBind(true), SQLBind(uid)).run()
            }
        }
    }

    @Test func putUpsertsOneUser() async throws {
        try await TestApp.run { t in
            let created = try await t.send(.PUT, "api/admin/users/u-1", bearer: t.admin,
                                           json: ["name": "Uma", "email": "uma@example.com", "timezone": "Asia/Kolkata", "role": "creator"])
            #expect(created.status == .ok)
            let user = try #require(created.json["user"] as? [String: Any])
            #expect(user["id"] as? String == "u-1" && user["role"] as? String == "creator" && user["isActive"] as? Bool == true)
            let uid = user["agoraUid"] as? Int
            let updated = try await t.send(.PUT, "api/admin/users/u-1", bearer: t.admin,
                                           json: ["name": "Uma B", "email": "uma@example.com", "timezone": NSNull(), "isActive": false])
            let after = try #require(updated.json["user"] as? [String: Any])
            #expect(after["agoraUid"] as? Int == uid)
            // role was not sent: the creator stays a creator (a partial sync must not demote anyone).
            #expect(after["timezone"] is NSNull && after["isActive"] as? Bool == false && after["role"] as? String == "creator")
            let demoted = try await t.send(.PUT, "api/admin/users/u-1", bearer: t.admin, json: ["name": "Uma B", "email": "uma@example.com", "role": "member"])
            #expect((demoted.json["user"] as? [String: Any])?["role"] as? String == "member")
            #expect((demoted.json["user"] as? [String: Any])?["isActive"] as? Bool == false, "isActive not sent: kept")
            let badZone = try await t.send(.PUT, "api/admin/users/u-1", bearer: t.admin, json: ["name": "U", "email": "u@example.com", "timezone": "Nowhere/Land"])
            #expect(badZone.status == .badRequest)
            let mismatch = try await t.send(.PUT, "api/admin/users/u-1", bearer: t.admin, json: ["id": "u-2", "name": "U", "email": "u@example.com"])
            #expect(mismatch.status == .badRequest)
            #expect(try await User.find("u-1", on: t.app.db)?.name == "Uma B")
        }
    }

    @Test func deletingAUserErasesEverythingOfTheirs() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([], follows: [["followerId": "m1", "followedId": "creator"], ["followerId": "creator", "followedId": "m2"]],
                                    subscriptions: [["memberId": "m1", "creatorId": "creator", "status": "active"]])
            let stream = try await t.createStream()
            let r = try await t.send(.DELETE, "api/admin/users/creator", bearer: t.admin)
            #expect(r.status == .ok && r.json["deleted"] as? Bool == true)
            #expect(try await User.find("creator", on: t.app.db) == nil)
            #expect(try await Follow.query(on: t.app.db).count() == 0)
            #expect(try await Subscription.query(on: t.app.db).count() == 0)
            #expect(try await LiveStream.find(stream, on: t.app.db) == nil)
            struct Row: Decodable { let n: Int }
            let leftovers = try await (t.app.db as! any SQLDatabase).raw("SELECT COUNT(*) AS n FROM users WHERE email = \(bind: "creator@example.com")").first(decoding: Row.self)
            #expect(leftovers?.n == 0)
            let again = try await t.send(.DELETE, "api/admin/users/creator", bearer: t.admin)
            #expect(again.status == .ok && again.json["deleted"] as? Bool == false)
        }
    }

    @Test func unfollowing() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            try await t.importUsers([], follows: [["followerId": "m1", "followedId": "creator"]])
            let r = try await t.send(.DELETE, "api/admin/follows", bearer: t.admin, json: ["followerId": "m1", "followedId": "creator"])
            #expect(r.status == .ok && r.json["deleted"] as? Bool == true)
            #expect(try await Follow.query(on: t.app.db).count() == 0)
            let again = try await t.send(.DELETE, "api/admin/follows", bearer: t.admin, json: ["followerId": "m1", "followedId": "creator"])
            #expect(again.json["deleted"] as? Bool == false)
        }
    }
}

final class UIDSequence: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt32]
    init(_ values: [UInt32]) { self.values = values }
    func next() -> UInt32 { lock.withLock { values.isEmpty ? UInt32.random(in: 1_000...UInt32.max) : values.removeFirst() } }
}
