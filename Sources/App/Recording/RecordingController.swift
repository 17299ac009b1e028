import AgoraAccessToken
import Fluent
import Vapor

/// Recordings on S3: presigned uploads for the frontend, verified replay URLs, replay links.
struct RecordingController: RouteCollection {
    let lifecycle: StreamLifecycle
    let recordings: Recordings
    let agora: AppConfig.AgoraSettings
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

    private func owned(_ req: Request) async throws -> LiveStream {
        try await lifecycle.ownedStream(req.parameters.get("streamId") ?? "", by: try req.caller.id, on: req.db)
    }

    func cloud() throws -> (any CloudRecorder, ObjectStore) {
        guard let cloud = recordings.cloud, let store = recordings.store else {
            throw APIError.featureDisabled("Cloud recording (AGORA_CUSTOMER_ID/SECRET and S3 storage)")
        }
        return (cloud, store)
    }

    /// POST …/recording/start: acquire + start in mix mode into our bucket.
    @Sendable func startRecording(req: Request) async throws -> RecordingState {
        let (cloud, store) = try cloud()
        let stream = try await owned(req)
        if stream.isCancelled { throw StreamLifecycle.cancelledError }
        guard stream.state == .live else { throw APIError(.conflict, "stream_not_live", "Recording needs the stream to be live") }
        guard stream.resourceId == nil else { throw APIError(.conflict, "recording_active", "A recording is already running") }
        // The recorder's own uid, not any member's; its token outlives the recording (it cannot renew).
        var uid: UInt32 = 0
        repeat { uid = UInt32.random(in: 1...UInt32.max) } while try await User.query(on: req.db).filter(\.$agoraUid == Int64(uid)).count() > 0
        let token = try RTCTokenBuilder.build(appId: agora.appId, appCertificate: agora.appCertificate,
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
            try await recordings.saveRecordingColumns(stream, on: req.db)
            return RecordingState(recording: .init(active: true, resourceId: resource, sid: sid, uid: String(uid), status: nil, replayUrl: stream.replayUrl))
        } catch let failure as CloudRecordingClient.AgoraFailure {
            throw Recordings.apiError(failure)
        }
    }

    /// POST …/recording/stop: stops and points replayUrl at the recorded MP4 (else the HLS playlist).
    @Sendable func stopRecording(req: Request) async throws -> RecordingState {
        _ = try cloud()
        let stream = try await owned(req)
        guard stream.resourceId != nil else { throw APIError(.conflict, "recording_not_active", "No recording is running") }
        try await recordings.stopActive(stream, on: req.db)
        return RecordingState(recording: .init(active: false, resourceId: nil, sid: stream.recordingSid, uid: stream.recordingId, status: nil, replayUrl: stream.replayUrl))
    }

    @Sendable func queryRecording(req: Request) async throws -> RecordingState {
        let (cloud, _) = try cloud()
        let stream = try await owned(req)
        guard let resource = stream.resourceId, let sid = stream.recordingSid else {
            return RecordingState(recording: .init(active: false, resourceId: nil, sid: stream.recordingSid, uid: stream.recordingId, status: nil, replayUrl: stream.replayUrl))
        }
        do {
            let json = try await cloud.query(resourceID: resource, sid: sid)
            let status = (json["serverResponse"] as? [String: Any])?["status"] as? Int
            return RecordingState(recording: .init(active: true, resourceId: resource, sid: sid, uid: stream.recordingId, status: status, replayUrl: stream.replayUrl))
        } catch let failure as CloudRecordingClient.AgoraFailure {
            throw Recordings.apiError(failure)
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

    func store() throws -> ObjectStore {
        guard let store = recordings.store else { throw APIError.featureDisabled("Recording storage (AWS_BUCKET_NAME and AWS credentials)") }
        return store
    }

    @Sendable func uploadURL(req: Request) async throws -> UploadResponse {
        let store = try store()
        let stream = try await owned(req)
        let body = try req.json(UploadRequest.self)
        guard let ext = RecordingKeys.contentTypes[body.contentType.lowercased()] else {
            throw APIError(.badRequest, "unsupported_content_type", "contentType must be one of \(RecordingKeys.contentTypes.keys.sorted().joined(separator: ", "))")
        }
        if stream.isCancelled { throw StreamLifecycle.cancelledError }
        let key = RecordingKeys.newKey(streamID: stream.id!, ext: ext, fileName: body.fileName.map { String($0.prefix(255)) })
        let contentType = body.contentType.lowercased()
        let (url, expiresAt) = try store.uploadURL(key: key, contentType: contentType)
        return UploadResponse(uploadUrl: url.absoluteString, headers: ["Content-Type": contentType], key: key,
                              replayUrl: store.replayURL(key: key), expiresAt: expiresAt)
    }

    struct ReplayRequest: Content { let replayUrl: String }
    struct ReplaySet: Content { var success = true; let message: String; let replayUrl: String }

    @Sendable func setReplay(req: Request) async throws -> ReplaySet {
        guard recordings.store != nil || !recordings.externalOrigins.isEmpty else {
            throw APIError.featureDisabled("Replay URLs (AWS_BUCKET_NAME or REPLAY_URL_ORIGINS)")
        }
        let stream = try await owned(req)
        let body = try req.json(ReplayRequest.self)
        try await lifecycle.setReplay(try await recordings.validatedReplay(body.replayUrl, streamID: stream.id!), stream, on: req.db)
        return ReplaySet(message: "Replay saved", replayUrl: stream.replayUrl!)
    }

    struct ReplayLink: Content {
        var success = true
        let url: String
        @NullEncodable var expiresAt: Date?
    }

    /// GET /api/streams/:streamId/replay — a short-lived link (or the CDN URL).
    @Sendable func replay(req: Request) async throws -> ReplayLink {
        _ = try req.caller
        let stream = try await lifecycle.stream(req.parameters.get("streamId") ?? "", on: req.db)
        guard let replay = stream.replayUrl else { throw APIError.notFound("replay_not_found", "This stream has no replay") }
        guard let store = recordings.store, let key = store.key(inReplayURL: replay) else { return ReplayLink(url: replay, expiresAt: nil) }
        let (url, expiresAt) = try store.downloadURL(key: key)
        return ReplayLink(url: url.absoluteString, expiresAt: expiresAt)
    }
}
