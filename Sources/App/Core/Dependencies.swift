import Vapor

/// The object graph, built once in `configure` (tests swap the clock, uid source, stream event
/// hooks and mail transport through `Overrides`). Controllers get the services they use through
/// their initializers in `routes`; no globals.
struct Dependencies: Sendable {
    var config: AppConfig
    var clock: AppClock
    var jwt: JWTVerifier
    var tokens: AgoraTokenIssuer
    var uids: UidAllocator
    var jobs: JobQueue
    var wake: WakeSignal
    var worker: Worker
    var unsubscribe: UnsubscribeTokens
    var reminders: Reminders
    /// S3 and Agora Cloud Recording (each nil until configured).
    var recordings: Recordings
    /// nil unless AGORA_CUSTOMER_ID/SECRET are set.
    var kickingRules: KickingRules?
    /// Every change of a stream's state.
    var lifecycle: StreamLifecycle
    /// Weekly class series (their occurrences go through `lifecycle` like any stream).
    var series: SeriesService
    /// Sends the outbox to the host platform's webhook endpoints (runs inside the worker).
    var webhooks: WebhookDispatcher
    /// APNs / FCM pushes (runs inside the worker).
    var push: PushSender
    var rateLimiter: RateLimiter
    /// nil when no relay is configured (deliveries wait in the queue).
    var mailTransport: (any MailTransport)?
    var metrics: AppMetrics
    /// Short-lived snapshots for the token path (streams, users, moderation).
    var cache: TokenCache
    /// SQLite's connection for single write statements that must not wait for the lock (nil with PostgreSQL).
    var sqliteWriter: SQLiteStatementWriter?
    /// Requests being answered now (graceful shutdown waits for them before closing the database).
    var inFlight = InFlightRequests()
}

/// What tests (or `entrypoint`) may swap before `configure` builds the rest.
struct Overrides: Sendable {
    var clock: AppClock = .system
    var randomUID: @Sendable () -> UInt32 = { UInt32.random(in: 1...UInt32.max) }
    var streamEvents: (any StreamEvents)? = nil
    var mailTransport: (any MailTransport)? = nil
    var templatesDirectory: String? = nil
    /// What stops a stream's recording when it ends (default: the configured `Recordings`).
    var streamRecordings: (any StreamRecordings)? = nil
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
