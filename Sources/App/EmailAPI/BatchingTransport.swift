import Fluent
import Foundation
import Mailer
import NIOConcurrencyHelpers

/// A token bucket of API calls per second for one process, which a provider's Retry-After or
/// ratelimit-reset can hold shut for a while. Calls wait for a token instead of finding the limit
/// through 429s.
actor RequestPacer {
    private let rate: Double
    private let burst: Double
    private var tokens: Double
    private var last = ContinuousClock.now
    private var closedUntil = ContinuousClock.now

    init(requestsPerSecond: Double) {
        rate = max(0.01, requestsPerSecond)
        burst = max(1, rate.rounded(.down)) // at most one second's worth at once
        tokens = burst
    }

    /// Waits until a call may go out, then takes its token.
    func acquire() async {
        while true {
            let now = ContinuousClock.now
            if now < closedUntil {
                try? await Task.sleep(until: closedUntil, clock: .continuous)
                continue
            }
            let elapsed = last.duration(to: now)
            last = now
            tokens = min(burst, tokens + (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * rate)
            if tokens >= 1 {
                tokens -= 1
                return
            }
            try? await Task.sleep(for: .milliseconds(Int64(((1 - tokens) / rate) * 1000) + 1))
        }
    }

    /// No call before `seconds` from now (Retry-After, ratelimit-reset).
    func hold(for seconds: TimeInterval) {
        let until = ContinuousClock.now.advanced(by: .milliseconds(Int64(seconds * 1000)))
        if until > closedUntil { closedUntil = until }
        tokens = 0
    }
}

/// A MailTransport over an HTTPS email API: emails handed in concurrently by the worker are
/// gathered into batches of up to the provider's maximum, paced by a `RequestPacer`, sent by at
/// most `maxConcurrentRequests` calls at a time; each caller gets its own email's outcome.
/// When the provider refuses our key the transport pauses (the worker stops claiming, /ready says
/// why) and tries again after `pauseSeconds`.
final class BatchingTransport: MailTransport, @unchecked Sendable {
    let client: any EmailAPIClient
    let settings: EmailAPISettings
    private let pacer: RequestPacer
    /// How long the first email of a batch waits for company (the worker hands in its claim at once).
    let linger: Duration

    private struct Waiting {
        let email: OutgoingEmail
        let continuation: CheckedContinuation<MailOutcome, Never>
    }
    private struct State {
        var queue: [Waiting] = []
        var senders = 0
        var paused: (reason: String, until: Date)?
    }
    private let state = NIOLockedValueBox(State())

    init(client: any EmailAPIClient, settings: EmailAPISettings, linger: Duration = .milliseconds(20)) {
        self.client = client
        self.settings = settings
        self.linger = linger
        pacer = RequestPacer(requestsPerSecond: settings.requestsPerSecond)
    }

    var name: String { client.provider.rawValue }
    var maxBatch: Int { client.provider.maxBatch }

    var pausedReason: String? {
        state.withLockedValue { s in
            guard let p = s.paused else { return nil }
            if p.until <= Date() { s.paused = nil; return nil }
            return p.reason
        }
    }

    func send(_ message: MailMessage, recipientID: String, deliveryID: Int64, on db: any Database) async -> MailOutcome {
        if let reason = pausedReason { return .paused(reason: reason, retryAfter: settings.pauseSeconds) }
        return await withCheckedContinuation { continuation in
            let start = state.withLockedValue { s -> Bool in
                s.queue.append(Waiting(email: OutgoingEmail(deliveryID: deliveryID, message: message), continuation: continuation))
                // Another sender only when more than a batch is waiting (small batches waste calls).
                guard s.senders == 0 || (s.queue.count > maxBatch * s.senders && s.senders < settings.maxConcurrentRequests) else { return false }
                s.senders += 1
                return true
            }
            if start { Task { await self.senderLoop() } }
        }
    }

    private func senderLoop() async {
        while true {
            if state.withLockedValue({ $0.queue.count < maxBatch }) { try? await Task.sleep(for: linger) }
            await pacer.acquire()
            let batch: [Waiting] = state.withLockedValue { s in
                let taken = Array(s.queue.prefix(maxBatch))
                s.queue.removeFirst(taken.count)
                if taken.isEmpty { s.senders -= 1 }
                return taken
            }
            if batch.isEmpty { return }
            if let reason = pausedReason {
                for waiting in batch { waiting.continuation.resume(returning: .paused(reason: reason, retryAfter: settings.pauseSeconds)) }
                continue
            }
            let result = await client.send(batch.map(\.email))
            if let wait = result.waitSeconds, wait > 0 { await pacer.hold(for: wait) }
            for (i, waiting) in batch.enumerated() {
                let outcome = i < result.outcomes.count ? result.outcomes[i] : .transient(reason: "no outcome from \(name)")
                if case .paused(let reason, let retry) = outcome {
                    state.withLockedValue { $0.paused = (reason, Date().addingTimeInterval(retry)) }
                }
                waiting.continuation.resume(returning: outcome)
            }
        }
    }

    func shutdown() async {}
}
