import Fluent
import Vapor

/// Recordings on S3: presigned uploads for the frontend, verified replay URLs, replay links.
struct RecordingController: RouteCollection {
    func boot(routes: any RoutesBuilder) throws {
        routes.post("creator", "streams", ":streamId", "recording", "upload-url", use: uploadURL)
        routes.put("creator", "streams", ":streamId", "replay", use: setReplay)
        routes.get("streams", ":streamId", "replay", use: replay)
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
