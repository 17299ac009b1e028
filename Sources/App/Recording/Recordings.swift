import Fluent
import Foundation
import SQLKit
import Vapor

/// Recordings of streams: replay URLs checked against our bucket, and Agora Cloud Recording
/// stopped when asked or when its stream ends (`StreamRecordings`).
struct Recordings: StreamRecordings {
    /// nil when S3 is not configured.
    let store: ObjectStore?
    /// nil unless AGORA_CUSTOMER_ID/SECRET (and S3, where recordings land) are set.
    let cloud: (any CloudRecorder)?

    /// REPLAY_URL_ORIGINS: external hosts (a video CDN) whose URLs are accepted unverified.
    var externalOrigins: [String] = []

    /// In our bucket (S3 on): under this stream's prefix and existing — verified. Else only
    /// under a configured replay origin — accepted, unverified. Anything else is refused.
    func validatedReplay(_ raw: String, streamID: String) async throws -> Replay {
        guard raw.utf8.count <= 2048 else { throw APIError.validation("replayUrl must be at most 2048 characters") }
        guard let store, store.key(inReplayURL: raw) != nil else {
            if Validation.isHTTPSURL(raw), ReplayOrigins.isUnder(raw, externalOrigins) { return Replay(url: raw, verified: false) }
            if store != nil { throw APIError(.badRequest, "replay_url_not_ours", "replayUrl must point into this service's recordings bucket") }
            guard Validation.isHTTPSURL(raw) else { throw APIError.validation("replayUrl must be an https URL of at most 2048 characters") }
            throw APIError(.badRequest, "replay_url_not_allowed",
                           "replayUrl must be under a configured replay origin (REPLAY_URL_ORIGINS) or in the recordings bucket")
        }
        switch try await store.validateReplay(raw, streamID: streamID) {
        case .success(let url): return Replay(url: url, verified: true)
        case .failure(.notOurs): throw APIError(.badRequest, "replay_url_not_ours", "replayUrl must point into this service's recordings bucket")
        case .failure(.wrongStream): throw APIError(.badRequest, "replay_url_wrong_stream", "replayUrl must be a recording of this stream")
        case .failure(.missing): throw APIError(.badRequest, "replay_object_missing", "No recording exists at replayUrl (upload it first)")
        }
    }

    /// Stops the stream's cloud recording and points replayUrl at the recorded MP4 (else the HLS
    /// playlist). Also when the stream itself ends (`StreamLifecycle.end`).
    func stopActive(_ stream: LiveStream, on db: any Database) async throws {
        guard let cloud, let store, let resource = stream.resourceId, let sid = stream.recordingSid,
              let uid = stream.recordingId.flatMap(UInt32.init) else { return }
        do {
            let files = try await cloud.stop(resourceID: resource, sid: sid, channel: stream.agoraChannelId, uid: uid)
            if let key = RecordingKeys.replayKey(streamID: stream.id!, files: files) {
                stream.replayUrl = store.replayURL(key: key)
                stream.replayVerified = true
            }
            stream.resourceId = nil
            try await saveRecordingColumns(stream, on: db)
        } catch let failure as CloudRecordingClient.AgoraFailure {
            // Agora no longer knows the task (it ended on its own): nothing left to stop.
            if failure.status == 404 || failure.code == 435 {
                stream.resourceId = nil
                try await saveRecordingColumns(stream, on: db)
            }
            throw Self.apiError(failure)
        }
    }

    /// Only the recording's columns: never the stream's state, which belongs to StreamLifecycle.
    func saveRecordingColumns(_ stream: LiveStream, on db: any Database) async throws {
        try await db.sql.update(LiveStream.schema)
            .set("resource_id", to: SQLBind(stream.resourceId)).set("recording_sid", to: SQLBind(stream.recordingSid))
            .set("recording_id", to: SQLBind(stream.recordingId)).set("replay_url", to: SQLBind(stream.replayUrl))
            .set("replay_verified", to: SQLBind(stream.replayVerified))
            .where("id", .equal, SQLBind(try stream.requireID())).run()
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
}

/// A replay URL that passed `Recordings.validatedReplay`.
struct Replay: Sendable, Equatable {
    let url: String
    /// Checked to exist in our bucket; an unverified URL never replaces a verified one.
    let verified: Bool
}

/// Origins (scheme, host, port, optional path prefix) a replay URL may point under.
enum ReplayOrigins {
    /// "https://cdn.example.com/videos" → "https://cdn.example.com/videos/" (nil unless https with a host, no query).
    static func origin(of raw: String) -> String? {
        guard Validation.isHTTPSURL(raw), let c = URLComponents(string: raw), c.query == nil, c.fragment == nil,
              c.user == nil, c.password == nil, let host = c.host?.lowercased() else { return nil }
        let port = c.port.map { ":\($0)" } ?? ""
        let path = c.path.hasSuffix("/") ? c.path : c.path + "/"
        return "https://\(host)\(port)\(path)"
    }

    /// Whether `raw` lies under one of `origins` (compared after normalising scheme and host
    /// case; no user info, no dot segments).
    static func isUnder(_ raw: String, _ origins: [String]) -> Bool {
        guard !origins.isEmpty, let c = URLComponents(string: raw), c.scheme?.lowercased() == "https", c.user == nil, c.password == nil,
              let host = c.host?.lowercased() else { return false }
        // Judge the path a browser will fetch: decoded, with no dot segments in any encoding.
        let path = c.path.isEmpty ? "/" : c.path
        guard !path.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == "." || $0 == ".." }),
              !path.contains("\\") else { return false }
        let normalized = "https://\(host)\(c.port.map { ":\($0)" } ?? "")\(path)"
        return origins.contains { normalized.hasPrefix($0) }
    }
}
