import AsyncHTTPClient
import Crypto
import _CryptoExtras
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// One push to one device.
struct PushMessage: Sendable {
    let token: String
    let title: String
    let body: String
    let deepLink: String
    let streamID: String
    let kind: NotificationKind
    /// Replaces an earlier push of the same stream and kind on the device.
    let collapseID: String
    /// Worthless after this (a live-now push after the class).
    let expiration: Date
    /// Delivered at once (live-now) rather than power-considerate.
    let urgent: Bool
}

enum PushOutcome: Sendable, Equatable {
    case sent
    /// The token is dead (APNs 410 Unregistered / 400 BadDeviceToken, FCM UNREGISTERED): remove the device.
    case unregistered(String)
    case retry(String, after: TimeInterval?)
    case failed(String)
}

protocol PushProvider: Sendable {
    func send(_ message: PushMessage) async -> PushOutcome
}

/// APNs over HTTP/2 with token-based auth: one provider JWT reused for every push and replaced
/// after 50 minutes (Apple: not more often than every 20, never older than 60), or at once when
/// Apple answers 403 ExpiredProviderToken (then the push is retried once).
final class APNsClient: PushProvider {
    let settings: PushSettings.APNs
    let client: HTTPClient
    let clock: AppClock
    private let key: P256.Signing.PrivateKey
    private let cached = NIOLockedValueBox<(jwt: String, issued: Date)?>(nil)
    /// How many provider JWTs this client has made (tests: one for 1,000 pushes).
    let tokensMade = NIOLockedValueBox(0)
    static let refreshAfter: TimeInterval = 50 * 60

    init(settings: PushSettings.APNs, client: HTTPClient, clock: AppClock) throws {
        self.settings = settings
        self.client = client
        self.clock = clock
        key = try P256.Signing.PrivateKey(pemRepresentation: settings.keyPEM)
    }

    func providerToken(replacing stale: String? = nil) throws -> String {
        let now = clock.now()
        return try cached.withLockedValue { c in
            if let c, c.jwt != stale, now.timeIntervalSince(c.issued) < Self.refreshAfter, now >= c.issued { return c.jwt }
            let jwt = try PushJWT.apns(key: key, keyID: settings.keyID, teamID: settings.teamID, issuedAt: now)
            c = (jwt, now)
            tokensMade.withLockedValue { $0 += 1 }
            return jwt
        }
    }

    func send(_ m: PushMessage) async -> PushOutcome {
        await send(m, retried: false)
    }

    private func send(_ m: PushMessage, retried: Bool) async -> PushOutcome {
        let jwt: String
        do { jwt = try providerToken() } catch { return .retry("APNs key unusable", after: 300) }
        var request = HTTPClientRequest(url: "\(settings.baseURL)/3/device/\(m.token)")
        request.method = .POST
        request.headers.add(name: "authorization", value: "bearer \(jwt)")
        request.headers.add(name: "apns-topic", value: settings.topic)
        request.headers.add(name: "apns-push-type", value: "alert")
        request.headers.add(name: "apns-priority", value: m.urgent ? "10" : "5")
        request.headers.add(name: "apns-expiration", value: String(max(0, Int(m.expiration.timeIntervalSince1970))))
        request.headers.add(name: "apns-collapse-id", value: String(m.collapseID.prefix(64)))
        request.headers.add(name: "content-type", value: "application/json")
        let payload: [String: Any] = [
            "aps": ["alert": ["title": m.title, "body": m.body], "sound": "default", "thread-id": m.streamID],
            "streamId": m.streamID, "kind": m.kind.rawValue, "url": m.deepLink,
        ]
        request.body = .bytes(ByteBuffer(data: (try? JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])) ?? Data()))
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            if code == 200 { return .sent }
            let reason = ((try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any])?["reason"] as? String ?? "HTTP \(code)"
            switch (code, reason) {
            case (410, _), (400, "BadDeviceToken"), (400, "DeviceTokenNotForTopic"): return .unregistered("APNs \(code) \(reason)")
            case (403, "ExpiredProviderToken") where !retried:
                _ = try? providerToken(replacing: jwt)
                return await send(m, retried: true)
            case (403, _): return .retry("APNs 403 \(reason)", after: 300)
            case (429, _), (500...599, _): return .retry("APNs \(code) \(reason)", after: nil)
            default: return .failed("APNs \(code) \(reason)")
            }
        } catch {
            return .retry("APNs: \(String(describing: error).prefix(120))", after: nil)
        }
    }
}

/// FCM HTTP v1 with an OAuth 2.0 access token from the service account (RS256 JWT bearer grant
/// to its token_uri), cached until a minute before it expires; one fetch at a time.
final class FCMClient: PushProvider {
    let settings: PushSettings.FCM
    let client: HTTPClient
    let clock: AppClock
    private let key: _RSA.Signing.PrivateKey
    private let token = NIOLockedValueBox<Task<(String, Date), any Error>?>(nil)
    let tokensFetched = NIOLockedValueBox(0)

    init(settings: PushSettings.FCM, client: HTTPClient, clock: AppClock) throws {
        self.settings = settings
        self.client = client
        self.clock = clock
        key = try _RSA.Signing.PrivateKey(pemRepresentation: settings.privateKeyPEM)
    }

    struct TokenError: Error, CustomStringConvertible { let description: String }

    func accessToken(replacing stale: String? = nil) async throws -> String {
        let now = clock.now()
        let task: Task<(String, Date), any Error> = token.withLockedValue { current in
            if let current { return current }
            let t = Task { try await self.fetchToken() }
            current = t
            return t
        }
        do {
            let (value, expires) = try await task.value
            if value == stale || now >= expires.addingTimeInterval(-60) {
                token.withLockedValue { if $0 == task { $0 = nil } }
                return try await accessToken()
            }
            return value
        } catch {
            token.withLockedValue { if $0 == task { $0 = nil } }
            throw error
        }
    }

    private func fetchToken() async throws -> (String, Date) {
        let now = clock.now()
        let assertion = try PushJWT.fcmAssertion(key: key, keyID: settings.privateKeyID, clientEmail: settings.clientEmail,
                                                 tokenURI: settings.tokenURI, issuedAt: now)
        var request = HTTPClientRequest(url: settings.tokenURI)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        request.body = .bytes(ByteBuffer(string: "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=\(assertion)"))
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 64 * 1024)
        guard response.status == .ok, let json = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any],
              let access = json["access_token"] as? String, let expiresIn = (json["expires_in"] as? NSNumber)?.doubleValue else {
            throw TokenError(description: "OAuth token endpoint answered \(response.status.code)")
        }
        tokensFetched.withLockedValue { $0 += 1 }
        return (access, now.addingTimeInterval(expiresIn))
    }

    func send(_ m: PushMessage) async -> PushOutcome {
        await send(m, retried: false)
    }

    private func send(_ m: PushMessage, retried: Bool) async -> PushOutcome {
        let access: String
        do { access = try await accessToken() } catch { return .retry("FCM token: \(error)", after: 60) }
        var request = HTTPClientRequest(url: "\(settings.baseURL)/v1/projects/\(settings.projectID)/messages:send")
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(access)")
        request.headers.add(name: "content-type", value: "application/json")
        let ttl = max(0, Int(m.expiration.timeIntervalSince(clock.now())))
        let message: [String: Any] = ["message": [
            "token": m.token,
            "notification": ["title": m.title, "body": m.body],
            "data": ["streamId": m.streamID, "kind": m.kind.rawValue, "url": m.deepLink],
            "android": ["ttl": "\(ttl)s", "collapse_key": m.collapseID, "priority": m.urgent ? "HIGH" : "NORMAL"],
        ]]
        request.body = .bytes(ByteBuffer(data: (try? JSONSerialization.data(withJSONObject: message, options: [.sortedKeys])) ?? Data()))
        do {
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            if code == 200 { return .sent }
            let error = ((try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any])?["error"] as? [String: Any]
            let details = error?["details"] as? [[String: Any]] ?? []
            let errorCode = details.compactMap { $0["errorCode"] as? String }.first ?? (error?["status"] as? String ?? "HTTP \(code)")
            let retryAfter = response.headers.first(name: "retry-after").flatMap(TimeInterval.init)
            switch (code, errorCode) {
            case (404, _), (_, "UNREGISTERED"): return .unregistered("FCM \(code) \(errorCode)")
            case (401, _) where !retried:
                _ = try? await accessToken(replacing: access)
                return await send(m, retried: true)
            case (429, _), (500...599, _): return .retry("FCM \(code) \(errorCode)", after: retryAfter)
            default: return .failed("FCM \(code) \(errorCode)")
            }
        } catch {
            return .retry("FCM: \(String(describing: error).prefix(120))", after: nil)
        }
    }
}
