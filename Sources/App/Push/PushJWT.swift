import Crypto
import _CryptoExtras
import Foundation

/// The two signed JWTs push needs, made here synchronously (so a cache can make exactly one):
/// APNs' provider token (ES256, header {alg, kid}, claims {iss, iat}) and the FCM service
/// account's OAuth assertion (RS256, header {alg, typ, kid}, claims {iss, scope, aud, iat, exp}).
/// Checked by PyJWT + cryptography in the fake servers.
enum PushJWT {
    static func base64url(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func json(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }

    static func apns(key: P256.Signing.PrivateKey, keyID: String, teamID: String, issuedAt: Date) throws -> String {
        let input = base64url(json(["alg": "ES256", "kid": keyID])) + "." + base64url(json(["iss": teamID, "iat": Int(issuedAt.timeIntervalSince1970)]))
        return input + "." + base64url(try key.signature(for: Data(input.utf8)).rawRepresentation)
    }

    static let fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

    static func fcmAssertion(key: _RSA.Signing.PrivateKey, keyID: String, clientEmail: String, tokenURI: String, issuedAt: Date) throws -> String {
        let iat = Int(issuedAt.timeIntervalSince1970)
        let input = base64url(json(["alg": "RS256", "typ": "JWT", "kid": keyID]))
            + "." + base64url(json(["iss": clientEmail, "scope": fcmScope, "aud": tokenURI, "iat": iat, "exp": iat + 3600]))
        let signature = try key.signature(for: SHA256.hash(data: Data(input.utf8)), padding: .insecurePKCS1v1_5)
        return input + "." + base64url(signature.rawRepresentation)
    }
}
