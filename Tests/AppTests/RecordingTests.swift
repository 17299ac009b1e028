import Fluent
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import VaporTesting
@testable import App

/// Against ministack with AUTH=true (scripts/s3/start_ministack.sh): a server that verifies signatures.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["S3_ENDPOINT"] != nil, "needs ministack (scripts/test starts it)"))
struct RecordingTests {
    static func s3(_ c: inout AppConfig) {
        var problems: [String] = []
        c.s3 = S3Settings.load(value: { ProcessInfo.processInfo.environment[$0] }, problems: &problems)
    }

    static func http(_ method: String, _ url: String, body: Data? = nil, headers: [String: String] = [:]) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    @Test func uploadThenVerifiedReplayThenPlayback() async throws {
        try await TestApp.run(realClock: true, adjust: Self.s3) { t in
            try await t.seedBasics()
            let stream = try await t.createStream(scheduled: false)
            let other = try await t.createStream("creator2", scheduled: false)
            let owner = try await t.token("creator")
            let r = try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", bearer: owner,
                                     json: ["contentType": "video/mp4", "fileName": "../../Évening Run!!.MOV"])
            #expect(r.status == .ok, "\(r.raw)")
            let key = try #require(r.json["key"] as? String)
            #expect(key.hasPrefix(RecordingKeys.prefix(stream)) && key.hasSuffix("-evening-run.mp4") && !key.contains(".."))
            #expect(r.json["method"] as? String == "PUT")
            #expect(r.json["headers"] as? [String: String] == ["Content-Type": "video/mp4"])
            #expect((r.json["expiresAt"] as? String)?.hasSuffix("Z") == true)
            let uploadURL = try #require(r.json["uploadUrl"] as? String)
            let replayURL = try #require(r.json["replayUrl"] as? String)

            // Before the upload the object does not exist.
            let early = try await t.send(.PUT, "api/creator/streams/\(stream)/replay", bearer: owner, json: ["replayUrl": replayURL])
            #expect(early.status == .badRequest && early.errorCode == "replay_object_missing")
            // The signed Content-Type is part of the signature: S3 refuses another one.
            let video = Data((0..<4096).map { UInt8($0 % 251) })
            #expect(try await Self.http("PUT", uploadURL, body: video, headers: ["Content-Type": "video/webm"]).0 == 403)
            #expect(try await Self.http("PUT", uploadURL + "x", body: video, headers: ["Content-Type": "video/mp4"]).0 == 403)
            #expect(try await Self.http("PUT", uploadURL, body: video, headers: ["Content-Type": "video/mp4"]).0 == 200)

            let ok = try await t.send(.PUT, "api/creator/streams/\(stream)/replay", bearer: owner, json: ["replayUrl": replayURL])
            #expect(ok.status == .ok && ok.json["replayUrl"] as? String == replayURL)
            #expect(try await LiveStream.find(stream, on: t.app.db)?.replayUrl == replayURL)

            // Refusals, each with its own code.
            let endpoint = ProcessInfo.processInfo.environment["S3_ENDPOINT"]!
            let bucket = ProcessInfo.processInfo.environment["AWS_BUCKET_NAME"]!
            let cases: [(String, String)] = [
                ("\(endpoint)/\(bucket)/\(RecordingKeys.prefix(stream))nope.mp4", "replay_object_missing"),
                ("\(endpoint)/other-bucket/\(key)", "replay_url_not_ours"),
                ("\(endpoint)/\(bucket)/\(RecordingKeys.prefix(other))x.mp4", "replay_url_wrong_stream"),
                (replayURL.replacingOccurrences(of: "http://", with: "https://"), "replay_url_not_ours"),
                (replayURL.replacingOccurrences(of: "127.0.0.1", with: "localhost"), "replay_url_not_ours"),
                ("https://cdn.example.com/\(key)", "replay_url_not_ours"),
                ("\(endpoint)/\(bucket)/\(RecordingKeys.prefix(stream))../\(RecordingKeys.prefix(other))x.mp4", "replay_url_not_ours"),
            ]
            for (url, code) in cases {
                let bad = try await t.send(.PUT, "api/creator/streams/\(stream)/replay", bearer: owner, json: ["replayUrl": url])
                #expect(bad.status == .badRequest && bad.errorCode == code, "\(url) → \(bad.errorCode ?? "nil")")
            }
            // The stop endpoint applies the same rule.
            let stopBad = try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: owner, json: ["replayUrl": cases[1].0])
            #expect(stopBad.errorCode == "replay_url_not_ours")
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: owner, json: ["replayUrl": replayURL]).status == .ok)

            // Members get a short-lived link that plays.
            let link = try await t.send(.GET, "api/streams/\(stream)/replay", bearer: try await t.token("m1"))
            #expect(link.status == .ok && link.json["expiresAt"] is String)
            let (status, data) = try await Self.http("GET", try #require(link.json["url"] as? String))
            #expect(status == 200 && data == video)
            #expect(try await t.send(.GET, "api/streams/\(other)/replay", bearer: try await t.token("m1")).errorCode == "replay_not_found")
        }
    }

    @Test func uploadRules() async throws {
        try await TestApp.run(realClock: true, adjust: Self.s3) { t in
            try await t.seedBasics()
            let stream = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            let bad = try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", bearer: owner, json: ["contentType": "image/png"])
            #expect(bad.status == .badRequest && bad.errorCode == "unsupported_content_type")
            for type in ["video/webm", "video/quicktime", "application/vnd.apple.mpegurl"] {
                let r = try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", bearer: owner, json: ["contentType": type, "fileName": String(repeating: "🎥", count: 300)])
                #expect(r.status == .ok, "\(type): \(r.raw)")
            }
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", bearer: try await t.token("creator2"), json: ["contentType": "video/mp4"]).status == .forbidden)
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", json: ["contentType": "video/mp4"]).status == .unauthorized)
        }
    }
}

@Suite struct RecordingOffTests {
    @Test func featureDisabledWithoutS3() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let stream = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            let up = try await t.send(.POST, "api/creator/streams/\(stream)/recording/upload-url", bearer: owner, json: ["contentType": "video/mp4"])
            #expect(up.status == .notFound && up.errorCode == "feature_disabled")
            let put = try await t.send(.PUT, "api/creator/streams/\(stream)/replay", bearer: owner, json: ["replayUrl": "https://x.example.com/a.mp4"])
            #expect(put.status == .notFound && put.errorCode == "feature_disabled")
            // Without S3 or REPLAY_URL_ORIGINS no replay URL is accepted at all (not even on stop).
            let stop = try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: owner, json: ["replayUrl": "https://cdn.example.com/r.m3u8"])
            #expect(stop.status == .badRequest && stop.errorCode == "replay_url_not_allowed")
        }
        try await TestApp.run(adjust: { $0.replayOrigins = ["https://cdn.example.com/"] }) { t in
            try await t.seedBasics()
            let stream = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            // Under a configured origin: accepted on stop, and the replay link is the stored URL.
            #expect(try await t.send(.POST, "api/creator/streams/\(stream)/stop", bearer: owner, json: ["replayUrl": "https://cdn.example.com/r.m3u8"]).status == .ok)
            let link = try await t.send(.GET, "api/streams/\(stream)/replay", bearer: try await t.token("m1"))
            #expect(link.json["url"] as? String == "https://cdn.example.com/r.m3u8" && link.json["expiresAt"] is NSNull)
        }
    }
}
