import Foundation
import SigV4
import Vapor

/// S3 (or an S3-compatible server): presigned URLs for the frontend, and a signed HEAD so the
/// server can check that an object really exists before it is accepted as a replay.
struct S3Settings: Sendable {
    var bucket: String
    var location: S3Location
    var credentials: AWSCredentials
    /// CDN or public URL in front of the bucket (S3_PUBLIC_BASE_URL); replay links then use it.
    var publicBaseURL: String?
    var uploadExpiry = 3600
    var downloadExpiry = 3600

    /// nil (feature off) until AWS_BUCKET_NAME and credentials are set.
    static func load(value: (String) -> String?, problems: inout [String]) -> S3Settings? {
        guard let bucket = value("AWS_BUCKET_NAME"), let key = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") else {
            return nil
        }
        let region = value("AWS_REGION") ?? "us-east-1"
        let location: S3Location
        if let endpoint = value("S3_ENDPOINT") {
            do { location = try S3Location(endpoint: endpoint, region: region) } catch {
                problems.append("S3_ENDPOINT must be an http(s) URL such as http://127.0.0.1:9000")
                return nil
            }
        } else {
            location = .aws(region: region)
        }
        let publicBase = value("S3_PUBLIC_BASE_URL").map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        return S3Settings(bucket: bucket, location: location,
                          credentials: AWSCredentials(accessKeyId: key, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN")),
                          publicBaseURL: publicBase)
    }
}

struct ObjectStore: Sendable {
    let settings: S3Settings
    let client: any Client
    let clock: AppClock

    private var signer: SigV4Signer { SigV4Signer(credentials: settings.credentials, location: settings.location) }

    func uploadURL(key: String, contentType: String) throws -> (url: URL, expiresAt: Date) {
        let now = clock.now()
        let url = try signer.presign(method: .put, bucket: settings.bucket, key: key, expires: settings.uploadExpiry, contentType: contentType, date: now)
        return (url, now.addingTimeInterval(TimeInterval(settings.uploadExpiry)))
    }

    func downloadURL(key: String) throws -> (url: URL, expiresAt: Date?) {
        if let base = settings.publicBaseURL { return (URL(string: base + "/" + SigV4.encode(key, keepSlash: true))!, nil) }
        let now = clock.now()
        let url = try signer.presign(method: .get, bucket: settings.bucket, key: key, expires: settings.downloadExpiry, date: now)
        return (url, now.addingTimeInterval(TimeInterval(settings.downloadExpiry)))
    }

    /// The stable link handed out as `replayUrl` (no signature in it).
    func replayURL(key: String) -> String {
        if let base = settings.publicBaseURL { return base + "/" + SigV4.encode(key, keepSlash: true) }
        return settings.location.url(bucket: settings.bucket, key: key).absoluteString
    }

    enum ReplayProblem: Error, Equatable { case notOurs, wrongStream, missing }

    /// The object key behind a replay URL, if it is one of ours: same scheme, host (and port) and
    /// bucket as the URLs this server hands out.
    func key(inReplayURL raw: String) -> String? {
        guard let url = URLComponents(string: raw), url.query == nil, url.fragment == nil else { return nil }
        let bases = [settings.publicBaseURL, settings.location.url(bucket: settings.bucket, key: "x").absoluteString.dropLast().description]
        for base in bases.compactMap({ $0 }) {
            guard let b = URLComponents(string: base), b.scheme == url.scheme, b.host?.lowercased() == url.host?.lowercased(), b.port == url.port else { continue }
            let prefix = b.percentEncodedPath.hasSuffix("/") ? b.percentEncodedPath : b.percentEncodedPath + "/"
            guard url.percentEncodedPath.hasPrefix(prefix) else { continue }
            return String(url.percentEncodedPath.dropFirst(prefix.count)).removingPercentEncoding
        }
        return nil
    }

    /// Accepts a replay URL for `streamID` only if it is ours, under that stream's prefix, and exists.
    func validateReplay(_ raw: String, streamID: String) async throws -> Result<String, ReplayProblem> {
        guard let key = key(inReplayURL: raw), !key.contains("..") else { return .failure(.notOurs) }
        guard key.hasPrefix(RecordingKeys.prefix(streamID)) else { return .failure(.wrongStream) }
        return try await exists(key: key) ? .success(replayURL(key: key)) : .failure(.missing)
    }

    /// Signed HEAD: 200 → exists, 404/403 → not (a private bucket answers 403 for missing keys
    /// when the caller may not list); anything else is an error.
    func exists(key: String) async throws -> Bool {
        let url = settings.location.url(bucket: settings.bucket, key: key)
        let signed = try signer.signedHeaders(method: "HEAD", url: url, date: clock.now())
        var headers = HTTPHeaders()
        for (name, value) in signed { headers.add(name: name, value: value) }
        let response = try await client.send(.HEAD, headers: headers, to: URI(string: url.absoluteString))
        switch response.status.code {
        case 200: return true
        case 404, 403: return false
        default: throw Abort(.badGateway, reason: "object store answered \(response.status.code)")
        }
    }
}

enum RecordingKeys {
    /// `recordings/{streamId without hyphens}/`: Agora's fileNamePrefix allows only letters and
    /// digits, and uploads and cloud recordings share one prefix per stream.
    static func prefixSegments(_ streamID: String) -> [String] { ["recordings", streamID.filter { $0.isLetter || $0.isNumber }] }
    static func prefix(_ streamID: String) -> String { prefixSegments(streamID).joined(separator: "/") + "/" }

    /// From a cloud recording's file list: the MP4 if there is one, else the HLS playlist.
    static func replayKey(streamID: String, files: [String]) -> String? {
        (files.first { $0.hasSuffix(".mp4") } ?? files.first { $0.hasSuffix(".m3u8") }).map { prefix(streamID) + $0 }
    }

    static let contentTypes: [String: String] = [
        "video/mp4": "mp4", "video/webm": "webm", "video/quicktime": "mov", "application/vnd.apple.mpegurl": "m3u8",
    ]

    /// `recordings/{streamId}/{random}[-{hint}].{ext}`: the name is ours; the file name is only a hint.
    static func newKey(streamID: String, ext: String, fileName: String?) -> String {
        let random = UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        var hint = ""
        if let fileName {
            let base = (fileName as NSString).deletingPathExtension.folding(options: [.diacriticInsensitive, .caseInsensitive], locale: nil).lowercased()
            let slug = base.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) && $0.isASCII ? Character($0) : "-" }
            hint = String(String(slug).split(separator: "-").joined(separator: "-").prefix(40))
        }
        return prefix(streamID) + random + (hint.isEmpty ? "" : "-" + hint) + "." + ext
    }
}
