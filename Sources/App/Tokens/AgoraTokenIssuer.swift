import AgoraAccessToken
import Foundation

/// Issues RTC tokens for this server's Agora project. Lifetimes are relative seconds
/// (AccessToken2), token and privileges alike, so privilege-expiry callbacks fire on time.
struct AgoraTokenIssuer: Sendable {
    let settings: AppConfig.AgoraSettings
    let clock: AppClock

    struct Issued: Sendable {
        let token: String
        let expiresAt: Date
    }

    func issue(channel: String, uid: UInt32, role: RTCTokenBuilder.Role) throws -> Issued {
        let now = clock.now()
        let issuedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let ttl = settings.tokenTTLSeconds
        let token = try RTCTokenBuilder.build(
            appId: settings.appId, appCertificate: settings.appCertificate, channel: channel, uid: uid,
            role: role, tokenExpire: ttl, privilegeExpire: ttl, issuedAt: issuedAt
        )
        return Issued(token: token, expiresAt: issuedAt.addingTimeInterval(TimeInterval(ttl)))
    }
}
