import AgoraAccessToken
import Fluent
import Foundation
import SigV4
import Testing
import VaporTesting
@testable import App

@Suite struct CloudRecordingTests {
    static func configure(_ fake: FakeAgora, secret: String? = nil) -> (inout AppConfig) -> Void {
        { c in
            c.s3 = S3Settings(bucket: "rec-bucket", location: .aws(region: "eu-central-1"),
                              credentials: AWSCredentials(accessKeyId: "AKIDRECORDER", secretAccessKey: "recorder-secret"))
            c.cloudRecording = CloudRecordingSettings(customerID: fake.customerID, customerSecret: secret ?? fake.customerSecret, baseURL: fake.baseURL)
        }
    }

    @Test func startQueryStopSetsTheReplay() async throws {
        let fake = try await FakeAgora()
        defer { Task { await fake.shutdown() } }
        try await TestApp.run(adjust: Self.configure(fake)) { t in
            try await t.seedBasics()
            let scheduled = try await t.createStream()
            let owner = try await t.token("creator")
            #expect(try await t.send(.POST, "api/creator/streams/\(scheduled)/recording/start", bearer: owner).errorCode == "stream_not_live")
            let id = try await t.createStream(scheduled: false)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: try await t.token("creator2")).status == .forbidden)

            let started = try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: owner)
            #expect(started.status == .ok, "\(started.raw)")
            let rec = try #require(started.json["recording"] as? [String: Any])
            #expect(rec["active"] as? Bool == true && rec["resourceId"] is String && rec["sid"] is String)
            let recorderUID = try #require((rec["uid"] as? String).flatMap(UInt32.init))
            let stored = try #require(try await LiveStream.find(id, on: t.app.db))
            #expect(stored.resourceId == rec["resourceId"] as? String && stored.recordingSid == rec["sid"] as? String)
            #expect(stored.recordingId == String(recorderUID))

            // What Agora was told: our bucket and region code, the stream's prefix, a token for the recorder.
            let start = try #require(fake.starts.first)
            let request = try #require(start["clientRequest"] as? [String: Any])
            let storage = try #require(request["storageConfig"] as? [String: Any])
            #expect(storage["region"] as? Int == 7 && storage["bucket"] as? String == "rec-bucket" && storage["accessKey"] as? String == "AKIDRECORDER")
            #expect(storage["fileNamePrefix"] as? [String] == RecordingKeys.prefixSegments(id))
            let token = try AccessToken2.verify(try #require(request["token"] as? String), appCertificate: TestCredentials.agoraCert)
            #expect(token.expire == 86_400)
            #expect(token.services == [.rtc(channel: id, uid: String(recorderUID), privileges: [1: 86_400])])
            #expect(fake.problems.isEmpty, "\(fake.problems)")

            #expect(try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: owner).errorCode == "recording_active")
            let query = try await t.send(.GET, "api/creator/streams/\(id)/recording", bearer: owner)
            #expect((query.json["recording"] as? [String: Any])?["status"] as? Int == 5)

            let stopped = try await t.send(.POST, "api/creator/streams/\(id)/recording/stop", bearer: owner)
            #expect(stopped.status == .ok)
            let sid = rec["sid"] as! String
            let expected = "https://rec-bucket.s3.eu-central-1.amazonaws.com/\(RecordingKeys.prefix(id))\(sid)_\(id)_0.mp4"
            #expect((stopped.json["recording"] as? [String: Any])?["replayUrl"] as? String == expected)
            #expect(try await LiveStream.find(id, on: t.app.db)?.replayUrl == expected)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/recording/stop", bearer: owner).errorCode == "recording_not_active")
            let after = try await t.send(.GET, "api/creator/streams/\(id)/recording", bearer: owner)
            #expect((after.json["recording"] as? [String: Any])?["active"] as? Bool == false)
        }
    }

    @Test func stoppingTheStreamStopsTheRecordingEvenWhenNothingWasRecorded() async throws {
        let fake = try await FakeAgora()
        defer { Task { await fake.shutdown() } }
        try await TestApp.run(adjust: Self.configure(fake)) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: owner).status == .ok)
            fake.nobodyPublished = true
            let stop = try await t.send(.POST, "api/creator/streams/\(id)/stop", bearer: owner)
            #expect(stop.status == .ok)
            let stream = try #require(try await LiveStream.find(id, on: t.app.db))
            #expect(stream.isLive == false && stream.resourceId == nil && stream.replayUrl == nil)
        }
    }

    @Test func hostGoneEndsTheStreamAndItsRecording() async throws {
        let fake = try await FakeAgora()
        defer { Task { await fake.shutdown() } }
        try await TestApp.run(adjust: { c in Self.configure(fake)(&c); c.ncsSecret = WebhookTests.secret }) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            #expect(try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: try await t.token("creator")).status == .ok)
            let host = try await User.find("creator", on: t.app.db)!.agoraUid
            try await WebhookTests.post(t, WebhookTests.event("g1", 104, channel: id, uid: host, seq: 7))
            t.setNow(t.start.addingTimeInterval(301))
            try await t.drainWorker()
            let stream = try await t.stream(id)
            #expect(stream.isLive == false && stream.resourceId == nil)
            #expect(stream.replayUrl?.hasSuffix("_0.mp4") == true)
        }
    }

    @Test func agoraErrorsBecomeClearJSON() async throws {
        let fake = try await FakeAgora()
        defer { Task { await fake.shutdown() } }
        try await TestApp.run(adjust: Self.configure(fake, secret: "wrong")) { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let r = try await t.send(.POST, "api/creator/streams/\(id)/recording/start", bearer: try await t.token("creator"))
            #expect(r.status == .badGateway && r.errorCode == "agora_auth_failed")
            #expect(try await LiveStream.find(id, on: t.app.db)?.resourceId == nil)
        }
        #expect(CloudRecordingClient.AgoraFailure(status: 404, code: 404, message: "failed to find worker").status == 404)
        #expect(Recordings.apiError(.init(status: 404, code: 404, message: "failed to find worker")).code == "recording_not_found")
        #expect(Recordings.apiError(.init(status: 206, code: 435, message: "no recorded data")).status == .conflict)
        #expect(Recordings.apiError(.init(status: 400, code: 53, message: "task conflict")).code == "recording_conflict")
    }

    @Test func offWithoutAgoraCredentials() async throws {
        try await TestApp.run { t in
            try await t.seedBasics()
            let id = try await t.createStream(scheduled: false)
            let owner = try await t.token("creator")
            for (method, path) in [(HTTPMethod.POST, "start"), (.POST, "stop"), (.GET, "")] {
                let r = try await t.send(method, "api/creator/streams/\(id)/recording" + (path.isEmpty ? "" : "/\(path)"), bearer: owner)
                #expect(r.status == .notFound && r.errorCode == "feature_disabled", "\(path)")
            }
        }
    }
}
