import AgoraAccessToken
import Foundation
import Vapor

/// Agora Cloud Recording (REST, HTTP Basic with the customer id/secret), mix mode, straight into
/// our S3 bucket under the stream's recordings prefix. On only when AGORA_CUSTOMER_ID/SECRET are set.
struct CloudRecordingSettings: Sendable {
    var customerID: String
    var customerSecret: String
    /// AGORA_API_BASE_URL (tests point it at a local fake).
    var baseURL: String

    static func load(value: (String) -> String?) -> CloudRecordingSettings? {
        guard let id = value("AGORA_CUSTOMER_ID"), let secret = value("AGORA_CUSTOMER_SECRET") else { return nil }
        let base = value("AGORA_API_BASE_URL") ?? "https://api.sd-rtn.com"
        return CloudRecordingSettings(customerID: id, customerSecret: secret, baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base)
    }

    /// One Agora RESTful call (Cloud Recording, kicking rules): HTTP Basic with the customer
    /// id/secret, JSON in and out. Callers judge success; Agora's shapes differ per API.
    func request(_ method: HTTPMethod, _ path: String, body: [String: Any]?, client: any Client) async throws -> (status: HTTPResponseStatus, json: [String: Any]) {
        var headers = HTTPHeaders()
        headers.add(name: .authorization, value: "Basic " + Data("\(customerID):\(customerSecret)".utf8).base64EncodedString())
        headers.contentType = .json
        let response = try await client.send(method, headers: headers, to: URI(string: baseURL + path)) { req in
            if let body { req.body = ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)) }
        }
        let json = response.body.flatMap { try? JSONSerialization.jsonObject(with: Data(buffer: $0)) as? [String: Any] } ?? [:]
        return (response.status, json)
    }
}

/// Agora Cloud Recording as the service uses it (live: `CloudRecordingClient`; contract-tested
/// against the FakeAgora HTTP server).
protocol CloudRecorder: Sendable {
    func acquire(channel: String, uid: UInt32) async throws -> String
    func start(resourceID: String, channel: String, uid: UInt32, token: String, storage: S3Settings, keyPrefix: [String]) async throws -> String
    func query(resourceID: String, sid: String) async throws -> [String: Any]
    /// Returns the recorded file names (HLS playlist and/or MP4s).
    func stop(resourceID: String, sid: String, channel: String, uid: UInt32) async throws -> [String]
}

struct CloudRecordingClient: CloudRecorder {
    let settings: CloudRecordingSettings
    let appID: String
    let client: any Client

    /// Agora's S3 region codes (agora.md §6); vendor 1 = Amazon S3.
    static let awsRegionCodes: [String: Int] = [
        "us-east-1": 0, "us-east-2": 1, "us-west-1": 2, "us-west-2": 3, "eu-west-1": 4, "eu-west-2": 5, "eu-west-3": 6,
        "eu-central-1": 7, "ap-southeast-1": 8, "ap-southeast-2": 9, "ap-northeast-1": 10, "ap-northeast-2": 11,
        "sa-east-1": 12, "ca-central-1": 13, "ap-south-1": 14, "cn-north-1": 15, "cn-northwest-1": 16, "af-south-1": 18,
        "ap-east-1": 19, "ap-northeast-3": 20, "eu-north-1": 21, "me-south-1": 22, "ap-southeast-3": 24, "eu-south-1": 25,
    ]

    struct AgoraFailure: Error {
        let status: Int
        let code: Int?
        let message: String
    }

    private func call(_ method: HTTPMethod, _ path: String, body: [String: Any]? = nil) async throws -> [String: Any] {
        let (status, json) = try await settings.request(method, "/v1/apps/\(appID)/cloud_recording" + path, body: body, client: client)
        let code = json["code"] as? Int
        // Agora answers some failures with 2xx + a code (e.g. 206 / 435 "no recorded data").
        guard status == .ok, code == nil else {
            let message = (json["reason"] as? String) ?? (json["message"] as? String) ?? "HTTP \(status.code)"
            throw AgoraFailure(status: Int(status.code), code: code, message: message)
        }
        return json
    }

    func acquire(channel: String, uid: UInt32) async throws -> String {
        let json = try await call(.POST, "/acquire", body: [
            "cname": channel, "uid": String(uid), "clientRequest": ["scene": 0, "resourceExpiredHour": 24],
        ])
        guard let id = json["resourceId"] as? String else { throw AgoraFailure(status: 502, code: nil, message: "acquire returned no resourceId") }
        return id
    }

    func start(resourceID: String, channel: String, uid: UInt32, token: String, storage: S3Settings, keyPrefix: [String]) async throws -> String {
        guard let region = Self.awsRegionCodes[storage.location.region] else {
            throw AgoraFailure(status: 400, code: nil, message: "AWS_REGION \(storage.location.region) is not supported by Agora Cloud Recording")
        }
        let json = try await call(.POST, "/resourceid/\(resourceID)/mode/mix/start", body: [
            "cname": channel, "uid": String(uid),
            "clientRequest": [
                "token": token,
                "recordingConfig": [
                    "channelType": 1, "streamTypes": 2, "maxIdleTime": 30,
                    "transcodingConfig": ["width": 1280, "height": 720, "fps": 30, "bitrate": 2260, "mixedVideoLayout": 1],
                ] as [String: Any],
                "recordingFileConfig": ["avFileType": ["hls", "mp4"]],
                "storageConfig": [
                    "vendor": 1, "region": region, "bucket": storage.bucket, "accessKey": storage.credentials.accessKeyId,
                    "secretKey": storage.credentials.secretAccessKey, "fileNamePrefix": keyPrefix,
                ] as [String: Any],
            ] as [String: Any],
        ])
        guard let sid = json["sid"] as? String else { throw AgoraFailure(status: 502, code: nil, message: "start returned no sid") }
        return sid
    }

    func query(resourceID: String, sid: String) async throws -> [String: Any] {
        try await call(.GET, "/resourceid/\(resourceID)/sid/\(sid)/mode/mix/query")
    }

    /// Returns the recorded file names (HLS playlist and/or MP4s).
    func stop(resourceID: String, sid: String, channel: String, uid: UInt32) async throws -> [String] {
        let json = try await call(.POST, "/resourceid/\(resourceID)/sid/\(sid)/mode/mix/stop", body: [
            "cname": channel, "uid": String(uid), "clientRequest": ["async_stop": false],
        ])
        let server = json["serverResponse"] as? [String: Any] ?? [:]
        if let list = server["fileList"] as? [[String: Any]] { return list.compactMap { $0["fileName"] as? String } }
        if let single = server["fileList"] as? String { return [single] }
        return []
    }
}
