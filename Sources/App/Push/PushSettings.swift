import Foundation

/// Push channels (issue 21): each off until configured (its deliveries are then `skipped:
/// channel_disabled`).
struct PushSettings: Sendable {
    struct APNs: Sendable {
        /// The .p8 key (PKCS#8 PEM, P-256).
        var keyPEM: String
        var keyID: String
        var teamID: String
        /// The app's bundle id (apns-topic).
        var topic: String
        /// https://api.push.apple.com, the sandbox, or a test server (APNS_BASE_URL).
        var baseURL: String
    }

    struct FCM: Sendable {
        var projectID: String
        var clientEmail: String
        var privateKeyPEM: String
        var privateKeyID: String
        /// From the service account JSON (the OAuth token endpoint).
        var tokenURI: String
        /// https://fcm.googleapis.com or a test server (FCM_BASE_URL).
        var baseURL: String
    }

    var apns: APNs?
    var fcm: FCM?
    /// PUSH_CA_FILE: an extra CA (PEM) to trust for the push servers (a test server's certificate).
    var caFile: String?
    /// PUSH_DEEP_LINK_TEMPLATE: where a push opens, `{streamId}` replaced (default {FRONTEND_URL}/live/{streamId}).
    var deepLinkTemplate: String?
    /// PUSH_CONCURRENCY: pushes in flight per process (HTTP/2 multiplexes them on few connections).
    var concurrency = 256

    static func load(value: (String) -> String?, problems: inout [String]) -> PushSettings {
        var s = PushSettings()
        func file(_ inline: String, _ path: String) -> String? {
            if let v = value(inline), !v.isEmpty { return v.replacingOccurrences(of: "\\n", with: "\n") }
            guard let p = value(path), !p.isEmpty else { return nil }
            guard let data = FileManager.default.contents(atPath: p) else { problems.append("\(path): cannot read \(p)"); return nil }
            return String(decoding: data, as: UTF8.self)
        }
        if let key = file("APNS_KEY_P8", "APNS_KEY_P8_PATH") {
            let keyID = value("APNS_KEY_ID") ?? "", team = value("APNS_TEAM_ID") ?? "", topic = value("APNS_TOPIC") ?? ""
            if keyID.isEmpty || team.isEmpty || topic.isEmpty {
                problems.append("APNs needs APNS_KEY_ID, APNS_TEAM_ID and APNS_TOPIC with the key")
            } else {
                let env = (value("APNS_ENV") ?? "production").lowercased()
                guard env == "production" || env == "sandbox" else { problems.append("APNS_ENV must be production or sandbox"); return s }
                let base = value("APNS_BASE_URL") ?? (env == "sandbox" ? "https://api.sandbox.push.apple.com" : "https://api.push.apple.com")
                s.apns = APNs(keyPEM: key, keyID: keyID, teamID: team, topic: topic, baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base)
            }
        }
        if let json = file("FCM_SERVICE_ACCOUNT_JSON", "FCM_SERVICE_ACCOUNT_PATH") {
            struct Account: Decodable { let project_id: String; let client_email: String; let private_key: String; let private_key_id: String; let token_uri: String }
            if let a = try? JSONDecoder().decode(Account.self, from: Data(json.utf8)) {
                let base = value("FCM_BASE_URL") ?? "https://fcm.googleapis.com"
                s.fcm = FCM(projectID: a.project_id, clientEmail: a.client_email, privateKeyPEM: a.private_key, privateKeyID: a.private_key_id,
                            tokenURI: a.token_uri, baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base)
            } else {
                problems.append("FCM_SERVICE_ACCOUNT_JSON is not a service account JSON (project_id, client_email, private_key, private_key_id, token_uri)")
            }
        }
        s.caFile = value("PUSH_CA_FILE")
        s.deepLinkTemplate = value("PUSH_DEEP_LINK_TEMPLATE")
        if let raw = value("PUSH_CONCURRENCY") {
            if let n = Int(raw), (1...1000).contains(n) { s.concurrency = n } else { problems.append("PUSH_CONCURRENCY must be 1–1000") }
        }
        return s
    }
}
