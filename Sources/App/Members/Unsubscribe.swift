import Crypto
import Fluent
import Foundation
import Mailer
import Vapor

/// One-click unsubscribe tokens: `base64url(member \n creator \n member's agora uid)` + "." +
/// 128-bit HMAC-SHA256 tag. The uid binds the token to this account: if the member is erased and
/// the id is later reused, the old token no longer matches (it never acts on someone else).
struct UnsubscribeTokens: Sendable {
    let key: SymmetricKey
    /// HMAC keyed once (its inner and outer pads hashed); each token copies it (one per email sent).
    private let keyed: HMAC<SHA256>

    /// Derived from JWT_SECRET with a purpose label, so no extra secret has to be configured.
    init(jwtSecret: String) {
        key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array("unsubscribe-token-v1".utf8), using: SymmetricKey(data: Array(jwtSecret.utf8))))
        keyed = HMAC<SHA256>(key: key)
    }

    func token(member: String, creator: String, memberUID: Int64) -> String {
        let payload = Array("\(member)\n\(creator)\n\(memberUID)".utf8)
        return Self.b64url(payload) + "." + Self.b64url(Array(tag(payload)))
    }

    struct Claims: Equatable { let member: String; let creator: String; let memberUID: Int64 }

    /// nil when the token is malformed or its signature does not verify.
    func verify(_ token: String) -> Claims? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard token.utf8.count <= 512, parts.count == 2, let payload = Self.unb64url(String(parts[0])), let given = Self.unb64url(String(parts[1])),
              given.count == 16 else { return nil }
        let expected = Array(tag(payload))
        guard zip(expected, given).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else { return nil }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard fields.count == 3, let uid = Int64(fields[2]) else { return nil }
        return Claims(member: String(fields[0]), creator: String(fields[1]), memberUID: uid)
    }

    private func tag(_ payload: [UInt8]) -> ArraySlice<UInt8> {
        var mac = keyed
        mac.update(data: payload)
        return Array(mac.finalize()).prefix(16)
    }

    static func b64url(_ bytes: [UInt8]) -> String {
        // Unpadded base64url straight into the string's storage (this runs for every email sent).
        let full = bytes.count / 3, rest = bytes.count % 3
        let length = full * 4 + (rest == 0 ? 0 : rest + 1)
        return String(unsafeUninitializedCapacity: length) { out in
            bytes.withUnsafeBufferPointer { input in
                b64urlAlphabet.withUnsafeBufferPointer { a in
                    var o = 0
                    func put(_ sextet: UInt32) { out[o] = a[Int(sextet & 63)]; o += 1 }
                    for i in 0..<full {
                        let v = UInt32(input[3 * i]) << 16 | UInt32(input[3 * i + 1]) << 8 | UInt32(input[3 * i + 2])
                        put(v >> 18); put(v >> 12); put(v >> 6); put(v)
                    }
                    if rest > 0 {
                        let v = UInt32(input[3 * full]) << 16 | (rest == 2 ? UInt32(input[3 * full + 1]) << 8 : 0)
                        put(v >> 18); put(v >> 12)
                        if rest == 2 { put(v >> 6) }
                    }
                }
            }
            return length
        }
    }

    private static let b64urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func unb64url(_ s: String) -> [UInt8]? {
        guard s.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else { return nil }
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        b += String(repeating: "=", count: (4 - b.count % 4) % 4)
        return Data(base64Encoded: b).map(Array.init)
    }
}

/// `GET/POST /api/unsubscribe/:token` — no login. GET only shows a page with a button (link scanners
/// follow GETs); POST (RFC 8058 one-click, or that button) mutes the creator for the member.
struct UnsubscribeController: RouteCollection {
    let tokens: UnsubscribeTokens

    func boot(routes: any RoutesBuilder) throws {
        let limited = routes.grouped(RateLimitMiddleware.unsubscribe)
        limited.get("unsubscribe", ":token", use: page)
        limited.post("unsubscribe", ":token", use: unsubscribe)
    }

    private func resolve(_ req: Request) async throws -> (member: User, creator: User) {
        guard let claims = tokens.verify(req.parameters.get("token") ?? "") else {
            throw APIError(.badRequest, "invalid_token", "This unsubscribe link is not valid")
        }
        guard let member = try await User.find(claims.member, on: req.db), member.agoraUid == claims.memberUID,
              let creator = try await User.find(claims.creator, on: req.db) else {
            throw APIError.notFound("unknown_subscription", "This unsubscribe link no longer matches an account")
        }
        return (member, creator)
    }

    @Sendable func page(req: Request) async throws -> Response {
        let (member, creator) = try await resolve(req)
        let muted = try await NotificationMute.query(on: req.db).filter(\.$member.$id == member.id!).filter(\.$creator.$id == creator.id!).count() > 0
        let body = muted
            ? "<p>You no longer get emails about <strong>\(HTML.escape(creator.name))</strong>'s live streams.</p>"
            : """
              <p>Stop emails about <strong>\(HTML.escape(creator.name))</strong>'s live streams?</p>
              <form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
              <button type="submit">Unsubscribe</button></form>
              """
        return HTMLText.page(title: "Unsubscribe", body: body)
    }

    @Sendable func unsubscribe(req: Request) async throws -> Response {
        let (member, creator) = try await resolve(req)
        try await NotificationMute.mute(member: member.id!, creator: creator.id!, on: req.db)
        return HTMLText.page(title: "Unsubscribed", body: "<p>Done: you will no longer get emails about <strong>\(HTML.escape(creator.name))</strong>'s live streams.</p>")
    }
}

/// Tiny HTML pages for people (not API clients).
enum HTMLText {
    static func page(title: String, body: String, status: HTTPResponseStatus = .ok) -> Response {
        let html = """
            <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
            <meta name="robots" content="noindex"><title>\(HTML.escape(title))</title>
            <style>body{font-family:-apple-system,Segoe UI,Roboto,sans-serif;max-width:640px;margin:48px auto;padding:0 16px;color:#1d1d1f}
            button{font-size:16px;padding:10px 18px;border-radius:8px;border:0;background:#1d1d1f;color:#fff;cursor:pointer}</style>
            </head><body>\(body)</body></html>
            """
        let response = Response(status: status, body: .init(string: html))
        response.headers.contentType = .html
        response.headers.replaceOrAdd(name: .cacheControl, value: "no-store")
        return response
    }
}
