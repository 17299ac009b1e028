import AgoraAccessToken
import Fluent
import Vapor

/// Recordings on S3: presigned uploads for the frontend, verified replay URLs, replay links.
struct RecordingController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.post("creator", "streams", ":streamId", "recording", "upload-url", use: uploadURL)
        routes.put("creator", "streams", ":streamId", "replay", use: setReplay)
        routes.get("streams", ":streamId", "replay", use: replay)
        routes.post("creator", "streams", ":streamId", "recording", "start", use: startRecording)
        routes.post("creator", "streams", ":streamId", "recording", "stop", use: stopRecording)
        routes.get("creator", "streams", ":streamId", "recording", use: queryRecording)
    }

    // MARK: Agora Cloud Recording

    struct RecordingState: Content {
        var success = true
        let recording: Body
        struct Body: Content {
            let active: Bool
            @NullEncodable var resourceId: String?
            @NullEncodable var sid: String?
            @NullEncodable var uid: String?
            @NullEncodable var status: Int?
            @NullEncodable var replayUrl: String?
        }
    }

    static func cloud(_ req: Request) throws -> (CloudRecordingClient, ObjectStore) {
        guard let cloud = req.deps.cloudRecording, let store = req.deps.objectStore else {
            throw APIError.featureDisabled("Cloud recording (AGORA_CUSTOMER_ID/SECRET and S3 storage)")
        }
        return (cloud, store)
    }

    /// POST …/recording/start: acquire + start in mix mode into our bucket.
    @Sendable func startRecording(req: Request) async throws -> RecordingState {
        let (cloud, store) = try Self.cloud(req)
        let stream = try await StreamController.findOwnedStream(req)
        try StreamController.requireNotCancelled(stream)
        guard stream.isLive else { throw APIError(.conflict, "stream_not_live", "Recording needs the stream to be live") }
        guard stream.resourceId == nil else { throw APIError(.conflict, "recording_active", "A recording is already running") }
        // The recorder's own uid, not any member's; its token outlives the recording (it cannot renew).
        var uid: UInt32 = 0
        repeat { uid = UInt32.random(in: 1...UInt32.max) } while try await User.query(on: req.db).filter(\.$agoraUid == Int64(uid)).count() > 0
        let token = try RTCTokenBuilder.build(appId: req.deps.config.agora.appId, appCertificate: req.deps.config.agora.appCertificate,
                                              channel: stream.agoraChannelId, uid: uid, role: .subscriber,
                                              tokenExpire: RTCTokenBuilder.maxLifetimeSeconds, privilegeExpire: RTCTokenBuilder.maxLifetimeSeconds,
                                              issuedAt: req.now)
        do {
            let resource = try await cloud.acquire(channel: stream.agoraChannelId, uid: uid)
            let sid = try await cloud.start(resourceID: resource, channel: stream.agoraChannelId, uid: uid, token: token,
                                            storage: store.settings, keyPrefix: RecordingKeys.prefixSegments(stream.id!))
            stream.resourceId = resource
            stream.recordingSid = sid
            stream.recordingId = String(uid)
            try await stream.save(on: req.db)
            return RecordingState(recording: .init(active: true, resourceId: resource, sid: sid, uid: String(uid), status: nil, replayUrl: stream.replayUrl))
        } catch let failure as CloudRecordingClient.AgoraFailure {
            throw Self.apiError(failure)
        }
    }

    /// POST …/recording/stop: stops and points replayUrl at the recorded MP4 (else the HLS playlist).
    @Sendable func stopRecording(req: Request) async throws -> RecordingState {
        _ = try Self.cloud(req)
        let stream = try await StreamController.findOwnedStream(req)
        guard stream.resourceId != nil else { throw APIError(.conflict, "recording_not_active", "No recording is running") }
        try await Self.stopActiveRecording(stream, deps: req.deps, db: req.db)
        return RecordingState(recording: .init(active: false, resourceId: nil, sid: stream.recordingSid, uid: stream.recordingId, status: nil, replayUrl: stream.replayUrl))
    }

    /// Also used when the stream itself ends (stop, or Agora saying the host is gone).
    static func stopActiveRecording(_ stream: LiveStream, deps: Dependencies, db: any Database) async throws {
        guard let cloud = deps.cloudRecording, let store = deps.objectStore, let resource = stream.resourceId, let sid = stream.recordingSid,
              let uid = stream.recordingId.flatMap(UInt32.init) else { return }
        do {
            let files = try await cloud.stop(resourceID: resource, sid: sid, channel: stream.agoraChannelId, uid: uid)
            if let key = RecordingKeys.replayKey(streamID: stream.id!, files: files) { stream.replayUrl = store.replayURL(key: key) }
            stream.resourceId = nil
            try await stream.save(on: db)
        } catch let failure as CloudRecordingClient.AgoraFailure {
            // Agora no longer knows the task (it ended on its own): nothing left to stop.
            if failure.status == 404 || failure.code == 435 {
                stream.resourceId = nil
                try await stream.save(on: db)
            }
            throw apiError(failure)
        }
    }

    @Sendable func queryRecording(req: Request) async throws -> RecordingState {
        let (cloud, _) = try Self.cloud(req)
        let stream = try await StreamController.findOwnedStream(req)
        guard let resource = stream.resourceId, let sid = stream.recordingSid else {
            return RecordingState(recording: .init(active: false, resourceId: nil, sid: stream.recordingSid, uid: stream.recordingId, status: nil, replayUrl: stream.replayUrl))
        }
        do {
            let json = try await cloud.query(resourceID: resource, sid: sid)
            let status = (json["serverResponse"] as? [String: Any])?["status"] as? Int
            return RecordingState(recording: .init(active: true, resourceId: resource, sid: sid, uid: stream.recordingId, status: status, replayUrl: stream.replayUrl))
        } catch let failure as CloudRecordingClient.AgoraFailure {
            throw Self.apiError(failure)
        }
    }

    /// Agora's failures as our JSON errors: what the creator can act on is 4xx; our own
    /// misconfiguration (credentials) is a 502 from an upstream.
    static func apiError(_ f: CloudRecordingClient.AgoraFailure) -> APIError {
        switch (f.status, f.code) {
        case (404, _): APIError(.notFound, "recording_not_found", "Agora has no such recording (it may have ended): \(f.message)")
        case (_, 435): APIError(.conflict, "recording_empty", "Nothing was recorded: nobody published in the channel")
        case (_, 53): APIError(.conflict, "recording_conflict", "A recording task for this channel is already running")
        case (401, _): APIError(.badGateway, "agora_auth_failed", "Agora rejected this server's REST credentials")
        case (400, nil): APIError(.badRequest, "recording_unavailable", f.message)
        default: APIError(.badGateway, "agora_error", "Agora Cloud Recording failed: \(f.message)")
        }
    }

    struct UploadRequest: Content { let contentType: String; let fileName: String? }
    struct UploadResponse: Content {
        var success = true
        let uploadUrl: String
        var method = "PUT"
        let headers: [String: String]
        let key: String
        let replayUrl: String
        let expiresAt: Date
    }

    static func store(_ req: Request) throws -> ObjectStore {
        guard let store = req.deps.objectStore else { throw APIError.featureDisabled("Recording storage (AWS_BUCKET_NAME and AWS credentials)") }
        return store
    }

    @Sendable func uploadURL(req: Request) async throws -> UploadResponse {
        let store = try Self.store(req)
        let stream = try await StreamController.findOwnedStream(req)
        let body = try req.content.decode(UploadRequest.self)
        guard let ext = RecordingKeys.contentTypes[body.contentType.lowercased()] else {
            throw APIError(.badRequest, "unsupported_content_type", "contentType must be one of \(RecordingKeys.contentTypes.keys.sorted().joined(separator: ", "))")
        }
        try StreamController.requireNotCancelled(stream)
        let key = RecordingKeys.newKey(streamID: stream.id!, ext: ext, fileName: body.fileName.map { String($0.prefix(255)) })
        let contentType = body.contentType.lowercased()
        let (url, expiresAt) = try store.uploadURL(key: key, contentType: contentType)
        return UploadResponse(uploadUrl: url.absoluteString, headers: ["Content-Type": contentType], key: key,
                              replayUrl: store.replayURL(key: key), expiresAt: expiresAt)
    }

    struct ReplayRequest: Content { let replayUrl: String }
    struct ReplaySet: Content { var success = true; let message: String; let replayUrl: String }

    @Sendable func setReplay(req: Request) async throws -> ReplaySet {
        _ = try Self.store(req)
        let stream = try await StreamController.findOwnedStream(req)
        let body = try req.content.decode(ReplayRequest.self)
        stream.replayUrl = try await Self.validatedReplay(body.replayUrl, stream: stream, req: req)
        try await stream.save(on: req.db)
        return ReplaySet(message: "Replay saved", replayUrl: stream.replayUrl!)
    }

    /// With S3 on: ours, under this stream's prefix, and existing. Without: any https URL.
    static func validatedReplay(_ raw: String, stream: LiveStream, req: Request) async throws -> String {
        guard raw.utf8.count <= 2048 else { throw APIError.validation("replayUrl must be at most 2048 characters") }
        guard let store = req.deps.objectStore else {
            guard Validation.isHTTPSURL(raw) else { throw APIError.validation("replayUrl must be an https URL of at most 2048 characters") }
            return raw
        }
        switch try await store.validateReplay(raw, streamID: stream.id!) {
        case .success(let url): return url
        case .failure(.notOurs): throw APIError(.badRequest, "replay_url_not_ours", "replayUrl must point into this service's recordings bucket")
        case .failure(.wrongStream): throw APIError(.badRequest, "replay_url_wrong_stream", "replayUrl must be a recording of this stream")
        case .failure(.missing): throw APIError(.badRequest, "replay_object_missing", "No recording exists at replayUrl (upload it first)")
        }
    }

    struct ReplayLink: Content {
        var success = true
        let url: String
        @NullEncodable var expiresAt: Date?
    }

    /// GET /api/streams/:streamId/replay — a short-lived link (or the CDN URL).
    @Sendable func replay(req: Request) async throws -> ReplayLink {
        _ = try req.caller
        let stream = try await StreamController.findStream(req)
        guard let replay = stream.replayUrl else { throw APIError.notFound("replay_not_found", "This stream has no replay") }
        guard let store = req.deps.objectStore, let key = store.key(inReplayURL: replay) else { return ReplayLink(url: replay, expiresAt: nil) }
        let (url, expiresAt) = try store.downloadURL(key: key)
        return ReplayLink(url: url.absoluteString, expiresAt: expiresAt)
    }
}
