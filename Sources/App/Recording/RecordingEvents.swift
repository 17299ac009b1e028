import Fluent
import Foundation

/// Agora Cloud Recording's events: 31 uploaded / 4 file infos → replayUrl; 11 session exit → the
/// recording is over.
struct RecordingEvents: Sendable {
    let recordings: Recordings
    var clock: AppClock = .system

    func apply(_ event: RecordingEventType, payload: [String: Any], on db: any Database) async throws {
        guard let cname = payload["cname"] as? String,
              let stream = try await LiveStream.query(on: db).filter(\.$agoraChannelId == cname).first() else { return }
        let details = payload["details"] as? [String: Any] ?? [:]
        switch event {
        case .fileInfos, .uploaded:
            let names = (details["fileList"] as? [[String: Any]])?.compactMap { ($0["fileName"] ?? $0["filename"]) as? String } ?? []
            if let store = recordings.store, let key = RecordingKeys.replayKey(streamID: stream.id!, files: names) {
                stream.replayUrl = store.replayURL(key: key)
                // The replay and its recording.ready event commit together.
                try await db.writeTransaction { tx in
                    try await recordings.saveRecordingColumns(stream, on: tx)
                    try await WebhookOutbox.recordingReady(stream, now: clock.now(), on: tx)
                }
            }
        case .sessionExited:
            stream.resourceId = nil
            try await recordings.saveRecordingColumns(stream, on: db)
        }
    }
}
