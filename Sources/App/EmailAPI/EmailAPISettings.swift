import Foundation
import Vapor

/// The HTTPS email APIs this service can send through (`EMAIL_PROVIDER`, facts in providers.md).
enum EmailProvider: String, Sendable, CaseIterable, Codable {
    case resend, postmark, sendgrid

    var defaultBaseURL: String {
        switch self {
        case .resend: "https://api.resend.com"
        case .postmark: "https://api.postmarkapp.com"
        case .sendgrid: "https://api.sendgrid.com"
        }
    }

    /// Emails per API call. SendGrid: one call per email — its personalizations share one
    /// content, and every member's email differs (name, time zone, unsubscribe link).
    var maxBatch: Int {
        switch self {
        case .resend: 100
        case .postmark: 500
        case .sendgrid: 1
        }
    }

    /// Calls one process keeps open at once when EMAIL_API_CONCURRENCY is unset: batching APIs need
    /// few (two batches in flight fill the worker's window); one-email-per-call SendGrid needs more
    /// to hide each call's latency (the benchmark: 4 calls at 50 ms each capped it near 80 emails/s).
    var defaultConcurrency: Int {
        switch self {
        case .resend, .postmark: 4
        case .sendgrid: 16
        }
    }

    /// Requests per second when EMAIL_API_RATE_LIMIT is unset: Resend's documented team default
    /// (2/s); Postmark and SendGrid publish no hard per-second limit for sending, these are
    /// conservative starting points.
    var defaultRequestsPerSecond: Double {
        switch self {
        case .resend: 2
        case .postmark: 10
        case .sendgrid: 50
        }
    }
}

struct EmailAPISettings: Sendable, Equatable {
    var provider: EmailProvider
    var apiKey: String
    /// EMAIL_API_BASE_URL (tests, proxies); no trailing slash.
    var baseURL: String
    /// Postmark's MessageStream (POSTMARK_MESSAGE_STREAM, default `broadcast`: notifications are bulk mail).
    var messageStream: String = "broadcast"
    /// EMAIL_API_RATE_LIMIT: requests per second *this process* may make (each replica paces itself:
    /// set it to the provider's limit divided by the number of sending processes).
    var requestsPerSecond: Double
    /// EMAIL_API_TIMEOUT_SECONDS: connect + response, per call.
    var timeoutSeconds: Double = 15
    /// EMAIL_API_CONCURRENCY: calls one process has open at once (default per provider).
    var maxConcurrentRequests: Int = 4
    /// How long the transport stays paused after the provider refused our key before it tries again.
    var pauseSeconds: TimeInterval = 60
}

extension EmailAPISettings {
    /// The provider's client over `http` (Vapor's client: async-http-client underneath).
    func client(http: any Client) -> any EmailAPIClient {
        let shared = EmailAPIHTTP(client: http, settings: self)
        return switch provider {
        case .resend: ResendClient(http: shared)
        case .postmark: PostmarkClient(http: shared)
        case .sendgrid: SendGridClient(http: shared)
        }
    }
}
