import Vapor

/// Everything outside the request that handlers need, built once in `configure` and injectable
/// by tests (clock, uid source, stream event hooks). No globals.
struct Dependencies: Sendable {
    var config: AppConfig
    var clock: AppClock
    var jwt: JWTVerifier
    var tokens: AgoraTokenIssuer
    var uids: UidAllocator
    var streamEvents: any StreamEvents
    var jobs: JobQueue
    var wake: WakeSignal
    var worker: Worker
    var unsubscribe: UnsubscribeTokens
    var reminders: Reminders
    /// nil when S3 is not configured.
    var objectStore: ObjectStore?
    /// nil unless AGORA_CUSTOMER_ID/SECRET (and S3, where recordings land) are set.
    var cloudRecording: CloudRecordingClient?
    /// nil unless AGORA_CUSTOMER_ID/SECRET are set.
    var kickingRules: KickingRules?
    var rateLimiter: RateLimiter
    /// nil when no relay is configured (deliveries wait in the queue).
    var mailTransport: (any MailTransport)?
    var metrics: AppMetrics
    /// Short-lived snapshots for the token path (streams, users, moderation).
    var cache: TokenCache
}

/// What tests (or `entrypoint`) may swap before `configure` builds the rest.
struct Overrides: Sendable {
    var clock: AppClock = .system
    var randomUID: @Sendable () -> UInt32 = { UInt32.random(in: 1...UInt32.max) }
    var streamEvents: (any StreamEvents)? = nil
    var mailTransport: (any MailTransport)? = nil
    var templatesDirectory: String? = nil
}

extension Application {
    private struct DependenciesKey: StorageKey { typealias Value = Dependencies }

    var deps: Dependencies {
        get {
            guard let d = storage[DependenciesKey.self] else { fatalError("configure(_:) has not run") }
            return d
        }
        set { storage[DependenciesKey.self] = newValue }
    }
}

extension Request {
    var deps: Dependencies { application.deps }
    var now: Date { application.deps.clock.now() }
}
