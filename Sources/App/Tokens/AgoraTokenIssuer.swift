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
        /// When the publish privileges end (an invitation shorter than the token), else nil.
        var publishExpiresAt: Date? = nil
    }

    /// `publishUntil`: the publish privileges expire then (a stage invitation's end), the join
    /// privilege and the token at the usual TTL.
    func issue(channel: String, uid: UInt32, role: RTCTokenBuilder.Role, publishUntil: Date? = nil) throws -> Issued {
        let now = clock.now()
        let issuedAt = Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let ttl = settings.tokenTTLSeconds
        var publish: UInt32?
        if role == .publisher, let until = publishUntil {
            publish = UInt32(clamping: max(1, min(Int64(ttl), Int64(until.timeIntervalSince(issuedAt).rounded(.down)))))
        }
        let token = try RTCTokenBuilder.build(
            appId: settings.appId, appCertificate: settings.appCertificate, channel: channel, account: AccessToken2.uidString(uid),
            role: role, tokenExpire: ttl, privilegeExpire: ttl, publishExpire: publish, issuedAt: issuedAt
        )
        return Issued(token: token, expiresAt: issuedAt.addingTimeInterval(TimeInterval(ttl)),
                      publishExpiresAt: publish.map { issuedAt.addingTimeInterval(TimeInterval($0)) })
    }

    /// An RTM token (service 2, privilege login) for the user's account string, same lifetime.
    func rtm(account: String) throws -> String {
        let issuedAt = Date(timeIntervalSince1970: clock.now().timeIntervalSince1970.rounded(.down))
        return try RTMTokenBuilder.build(appId: settings.appId, appCertificate: settings.appCertificate, userId: account,
                                         expire: settings.tokenTTLSeconds, issuedAt: issuedAt)
    }
}
