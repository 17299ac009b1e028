import Crypto
import Foundation

/// Standard Webhooks signing: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), the key
/// being the base64-decoded part of a `whsec_…` secret; one signature per active secret,
/// space-separated (a rotation's overlap).
enum WebhookSigner {
    static let prefix = "whsec_"

    /// A new secret: `whsec_` + base64 of 32 random bytes.
    static func newSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return prefix + Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }).base64EncodedString()
    }

    static func key(_ secret: String) -> SymmetricKey? {
        guard secret.hasPrefix(prefix), let bytes = Data(base64Encoded: String(secret.dropFirst(prefix.count))), bytes.count >= 24 else { return nil }
        return SymmetricKey(data: bytes)
    }

    static func signature(id: String, timestamp: Int, body: [UInt8], secret: String) -> String? {
        guard let key = key(secret) else { return nil }
        var message = Array("\(id).\(timestamp).".utf8)
        message += body
        return "v1," + Data(HMAC<SHA256>.authenticationCode(for: message, using: key)).base64EncodedString()
    }

    /// The `webhook-signature` header for the secrets in force.
    static func header(id: String, timestamp: Int, body: [UInt8], secrets: [String]) -> String {
        secrets.compactMap { signature(id: id, timestamp: timestamp, body: body, secret: $0) }.joined(separator: " ")
    }
}
