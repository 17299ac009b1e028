import Crypto
import Foundation

/// Agora AccessToken2 ("007"), byte-compatible with AgoraIO/Tools' reference builders.
///
/// Expiry values are seconds RELATIVE to `issueTs` (token and every privilege). The original
/// design passed an absolute Unix timestamp (`now + 3600`) in the v1 style, which under
/// AccessToken2 means a ~57-year token and never-expiring privileges; this type only takes
/// relative durations so that mistake cannot be expressed.
public struct AccessToken2: Equatable, Sendable {
    public static let version = "007"

    public var appId: String
    public var issueTs: UInt32
    /// Token lifetime in seconds counted from `issueTs`.
    public var expire: UInt32
    public var salt: UInt32
    public var services: [Service]

    public init(appId: String, issueTs: UInt32, expire: UInt32, salt: UInt32, services: [Service] = []) {
        self.appId = appId
        self.issueTs = issueTs
        self.expire = expire
        self.salt = salt
        self.services = services
    }

    public enum Service: Equatable, Sendable {
        /// RTC (type 1): privileges keyed by `RTCPrivilege`, uid as its wire string (§1.3).
        case rtc(channel: String, uid: String, privileges: [UInt16: UInt32])
        /// RTM (type 2).
        case rtm(userId: String, privileges: [UInt16: UInt32])
        /// FPA (type 4).
        case fpa(privileges: [UInt16: UInt32])
        /// Chat (type 5); empty userId for an app token.
        case chat(userId: String, privileges: [UInt16: UInt32])
        /// A service this parser does not know; its body length is unknowable, so parsing stops here.
        case unknown(type: UInt16)

        public var type: UInt16 {
            switch self {
            case .rtc: 1
            case .rtm: 2
            case .fpa: 4
            case .chat: 5
            case .unknown(let type): type
            }
        }
    }

    public enum RTCPrivilege: UInt16, Sendable {
        case joinChannel = 1, publishAudioStream = 2, publishVideoStream = 3, publishDataStream = 4
    }

    public enum Error: Swift.Error, Equatable {
        case invalidAppId, invalidCertificate, noServices, unknownServiceInBuild
        case badPrefix, badBase64, inflateFailed, truncated
        case invalidSignature
    }

    // MARK: Building

    /// RTC uid wire form: the number 0 is the wildcard "", any other uid its unsigned decimal text.
    public static func uidString(_ uid: UInt32) -> String { uid == 0 ? "" : String(uid) }

    /// Serializes, signs and compresses. Refuses (like the reference builders) unless appId and
    /// certificate are 32 hex characters and at least one service is present.
    public func build(appCertificate: String) throws -> String {
        guard Self.isHex32(appId) else { throw Error.invalidAppId }
        guard Self.isHex32(appCertificate) else { throw Error.invalidCertificate }
        guard !services.isEmpty else { throw Error.noServices }
        let info = try signingInfo()
        let signature = Self.signature(appCertificate: appCertificate, issueTs: issueTs, salt: salt, signingInfo: info)
        var content = Packer()
        content.putBytes(signature)
        content.bytes += info
        return Self.version + Data(try Zlib.compress(content.bytes)).base64EncodedString()
    }

    func signingInfo() throws -> [UInt8] {
        var p = Packer()
        p.putString(appId)
        p.putU32(issueTs)
        p.putU32(expire)
        p.putU32(salt)
        p.putU16(UInt16(services.count))
        // Stable sort by type, as the reference code does.
        let ordered = services.enumerated().sorted { ($0.element.type, $0.offset) < ($1.element.type, $1.offset) }
        for (_, service) in ordered {
            p.putU16(service.type)
            switch service {
            case .rtc(let channel, let uid, let privileges):
                p.putMap(privileges); p.putString(channel); p.putString(uid)
            case .rtm(let userId, let privileges), .chat(let userId, let privileges):
                p.putMap(privileges); p.putString(userId)
            case .fpa(let privileges):
                p.putMap(privileges)
            case .unknown:
                throw Error.unknownServiceInBuild
            }
        }
        return p.bytes
    }

    static func signature(appCertificate: String, issueTs: UInt32, salt: UInt32, signingInfo: [UInt8]) -> [UInt8] {
        // The 4-byte integers are the HMAC keys; the certificate is the first message (§1.4).
        let k1 = HMAC<SHA256>.authenticationCode(for: Array(appCertificate.utf8), using: SymmetricKey(data: Packer.u32(issueTs)))
        let signKey = HMAC<SHA256>.authenticationCode(for: Array(k1), using: SymmetricKey(data: Packer.u32(salt)))
        return Array(HMAC<SHA256>.authenticationCode(for: signingInfo, using: SymmetricKey(data: Array(signKey))))
    }

    private static func isHex32(_ s: String) -> Bool {
        s.utf8.count == 32 && s.utf8.allSatisfy { (48...57).contains($0) || (65...70).contains($0) || (97...102).contains($0) }
    }

    // MARK: Parsing

    /// Decodes a "007" token. `signatureValid` is nil when no certificate was given.
    public static func parse(_ token: String, appCertificate: String? = nil) throws -> (token: AccessToken2, signatureValid: Bool?) {
        guard token.hasPrefix(version) else { throw Error.badPrefix }
        guard let compressed = Data(base64Encoded: String(token.dropFirst(3))) else { throw Error.badBase64 }
        let content = try Zlib.decompress(Array(compressed))
        var r = Reader(content)
        let signature = try r.bytes()
        let infoStart = r.offset
        var t = AccessToken2(appId: try r.string(), issueTs: try r.u32(), expire: try r.u32(), salt: try r.u32())
        let count = try r.u16()
        for _ in 0..<count {
            let type = try r.u16()
            switch type {
            case 1:
                let privileges = try r.map()
                t.services.append(.rtc(channel: try r.string(), uid: try r.string(), privileges: privileges))
            case 2: let privileges = try r.map(); t.services.append(.rtm(userId: try r.string(), privileges: privileges))
            case 4: t.services.append(.fpa(privileges: try r.map()))
            case 5: let privileges = try r.map(); t.services.append(.chat(userId: try r.string(), privileges: privileges))
            default: t.services.append(.unknown(type: type))
            }
            if case .unknown = t.services.last { break }
        }
        var valid: Bool?
        if let appCertificate {
            // The signature covers the whole signingInfo, including services we could not decode.
            let expected = Self.signature(appCertificate: appCertificate, issueTs: t.issueTs, salt: t.salt, signingInfo: Array(content[infoStart...]))
            valid = constantTimeEqual(expected, signature)
        }
        return (t, valid)
    }

    /// Parses and verifies; throws `invalidSignature` when the certificate does not match.
    public static func verify(_ token: String, appCertificate: String) throws -> AccessToken2 {
        let (t, valid) = try parse(token, appCertificate: appCertificate)
        guard valid == true else { throw Error.invalidSignature }
        return t
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// RtcTokenBuilder2 semantics (§2): publisher gets join + publish audio/video/data, subscriber join only.
public enum RTCTokenBuilder {
    public enum Role: Sendable { case publisher, subscriber }

    public static let maxLifetimeSeconds: UInt32 = 86_400

    /// - Parameters:
    ///   - tokenExpire: seconds from `issuedAt` until the token expires (Agora caps validity at 24 h).
    ///   - privilegeExpire: seconds from `issuedAt` until the privileges expire (0 = never).
    public static func build(
        appId: String, appCertificate: String, channel: String, uid: UInt32, role: Role,
        tokenExpire: UInt32, privilegeExpire: UInt32, issuedAt: Date = Date(), salt: UInt32? = nil
    ) throws -> String {
        try build(appId: appId, appCertificate: appCertificate, channel: channel, account: AccessToken2.uidString(uid),
                  role: role, tokenExpire: tokenExpire, privilegeExpire: privilegeExpire, issuedAt: issuedAt, salt: salt)
    }

    /// User-account variant: the account string is written unchanged (so "0" is not a wildcard).
    public static func build(
        appId: String, appCertificate: String, channel: String, account: String, role: Role,
        tokenExpire: UInt32, privilegeExpire: UInt32, publishExpire: UInt32? = nil, issuedAt: Date = Date(), salt: UInt32? = nil
    ) throws -> String {
        var privileges: [UInt16: UInt32] = [AccessToken2.RTCPrivilege.joinChannel.rawValue: privilegeExpire]
        if role == .publisher {
            for p in [AccessToken2.RTCPrivilege.publishAudioStream, .publishVideoStream, .publishDataStream] {
                privileges[p.rawValue] = publishExpire ?? privilegeExpire
            }
        }
        let token = AccessToken2(
            appId: appId,
            issueTs: UInt32(clamping: Int64(issuedAt.timeIntervalSince1970.rounded(.down))),
            expire: tokenExpire,
            salt: salt ?? UInt32.random(in: 1...99_999_999),
            services: [.rtc(channel: channel, uid: account, privileges: privileges)]
        )
        return try token.build(appCertificate: appCertificate)
    }
}

/// RTM tokens (service type 2, privilege 1 = login) for a user id string.
public enum RTMTokenBuilder {
    public static func build(appId: String, appCertificate: String, userId: String, expire: UInt32,
                             issuedAt: Date = Date(), salt: UInt32? = nil) throws -> String {
        let token = AccessToken2(
            appId: appId, issueTs: UInt32(clamping: Int64(issuedAt.timeIntervalSince1970.rounded(.down))), expire: expire,
            salt: salt ?? UInt32.random(in: 1...99_999_999), services: [.rtm(userId: userId, privileges: [1: expire])])
        return try token.build(appCertificate: appCertificate)
    }
}

// MARK: - Little-endian packing

struct Packer {
    var bytes: [UInt8] = []

    static func u32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }
    mutating func putU16(_ v: UInt16) { bytes += [UInt8(v & 0xff), UInt8(v >> 8)] }
    mutating func putU32(_ v: UInt32) { bytes += Self.u32(v) }
    mutating func putBytes(_ b: [UInt8]) { putU16(UInt16(b.count)); bytes += b }
    mutating func putString(_ s: String) { putBytes(Array(s.utf8)) }
    mutating func putMap(_ m: [UInt16: UInt32]) {
        putU16(UInt16(m.count))
        for key in m.keys.sorted() { putU16(key); putU32(m[key]!) }
    }
}

struct Reader {
    let data: [UInt8]
    var offset = 0
    init(_ data: [UInt8]) { self.data = data }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, offset + n <= data.count else { throw AccessToken2.Error.truncated }
        defer { offset += n }
        return data[offset..<offset + n]
    }
    mutating func u16() throws -> UInt16 { let b = try take(2); return UInt16(b[b.startIndex]) | UInt16(b[b.startIndex + 1]) << 8 }
    mutating func u32() throws -> UInt32 { try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func bytes() throws -> [UInt8] { Array(try take(Int(try u16()))) }
    mutating func string() throws -> String { String(decoding: try bytes(), as: UTF8.self) }
    mutating func map() throws -> [UInt16: UInt32] {
        var m: [UInt16: UInt32] = [:]
        for _ in 0..<(try u16()) { let k = try u16(); m[k] = try u32() }
        return m
    }
}
