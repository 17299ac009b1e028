import Fluent
import Foundation
import SQLKit
import Vapor

/// A member's app installation that can receive pushes.
enum DevicePlatform: String, Codable, Sendable, CaseIterable {
    case ios, android, web

    /// APNs for iOS, FCM for Android and web.
    var channel: PushChannel { self == .ios ? .apns : .fcm }
}

enum PushChannel: String, Codable, Sendable { case apns, fcm }

enum Devices {
    static let schema = "devices"

    /// APNs tokens are 32+ bytes as hex; FCM registration tokens are opaque (letters, digits, `:_-`), at most 4 KB.
    static func isValid(token: String, platform: DevicePlatform) -> Bool {
        switch platform {
        case .ios:
            return (64...200).contains(token.utf8.count) && token.utf8.count % 2 == 0 && token.utf8.allSatisfy { isHex($0) }
        case .android, .web:
            return (1...4096).contains(token.utf8.count)
                && token.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
        }
    }

    private static func isHex(_ b: UInt8) -> Bool { (48...57).contains(b) || (97...102).contains(b) || (65...70).contains(b) }
    private static func isAlnum(_ b: UInt8) -> Bool { (48...57).contains(b) || (97...122).contains(b) || (65...90).contains(b) }

    /// Registers (or refreshes) a token for `user`; a token another user had moves to this one
    /// (one owner: the app is signed in as someone else now). Returns whether it was new to this user.
    @discardableResult
    static func register(user: String, platform: DevicePlatform, token: String, appVersion: String?, locale: String?, now: Date,
                         on sql: any SQLDatabase) async throws -> Bool {
        struct Row: Decodable { let user_id: String }
        let before = try await sql.raw("SELECT user_id FROM devices WHERE platform = \(bind: platform.rawValue) AND token = \(bind: token)")
            .first(decoding: Row.self)
        try await sql.insert(into: schema)
            .columns("id", "user_id", "platform", "token", "app_version", "locale", "created_at", "updated_at")
            .values(SQLBind(UUID()), SQLBind(user), SQLBind(platform.rawValue), SQLBind(token), SQLBind(appVersion), SQLBind(locale), SQLBind(now), SQLBind(now))
            .onConflict(with: ["platform", "token"]) {
                $0.set(excludedValueOf: "user_id").set(excludedValueOf: "app_version").set(excludedValueOf: "locale").set(excludedValueOf: "updated_at")
            }.run()
        return before?.user_id != user
    }
}

/// POST /api/me/devices, DELETE /api/me/devices/:token — the member's own app installations.
struct DevicesController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.post("me", "devices", use: register)
        routes.delete("me", "devices", ":token", use: remove)
    }

    struct Body: Content { let platform: String; let token: String; let appVersion: String?; let locale: String? }
    struct Device: Content {
        let platform: DevicePlatform
        let token: String
        @NullEncodable var appVersion: String?
        @NullEncodable var locale: String?
    }
    struct Answer: Content { var success = true; let device: Device }

    @Sendable func register(req: Request) async throws -> Response {
        let caller = try req.caller.id
        guard let user = try await User.find(caller, on: req.db) else { throw APIError.notFound("user_not_found", "The authenticated user is not known to this server") }
        guard user.isActive else { throw APIError(.forbidden, "user_inactive", "This account is inactive") }
        let body = try req.json(Body.self)
        guard let platform = DevicePlatform(rawValue: body.platform) else { throw APIError.validation("platform must be ios, android or web") }
        guard Devices.isValid(token: body.token, platform: platform) else {
            throw APIError.validation(platform == .ios ? "token must be the APNs device token in hex (64+ characters)"
                                                       : "token must be an FCM registration token (letters, digits, ':', '_', '-'; at most 4096)")
        }
        let appVersion = try Validation.text(body.appVersion, field: "appVersion", max: 40)
        let locale = try Validation.text(body.locale, field: "locale", max: 35)
        if let locale, !locale.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
            throw APIError.validation("locale must be a BCP 47 tag, e.g. en-US")
        }
        let new = try await Devices.register(user: caller, platform: platform, token: body.token, appVersion: appVersion, locale: locale,
                                             now: req.now, on: req.db.sql)
        return try await Answer(device: .init(platform: platform, token: body.token, appVersion: appVersion, locale: locale))
            .encodeResponse(status: new ? .created : .ok, for: req)
    }

    @Sendable func remove(req: Request) async throws -> RSVPController.Cancelled {
        let caller = try req.caller.id
        let token = req.parameters.get("token") ?? ""
        guard !token.isEmpty, token.utf8.count <= 4096 else { throw APIError.validation("token is required") }
        struct Row: Decodable { let id: UUID }
        let gone = try await req.db.sql.raw("DELETE FROM devices WHERE user_id = \(bind: caller) AND token = \(bind: token) RETURNING id")
            .all(decoding: Row.self)
        return .init(deleted: !gone.isEmpty)
    }
}
