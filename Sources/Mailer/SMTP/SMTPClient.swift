import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// One message waiting for (or on) a connection, and who waits for its outcomes.
struct SMTPJob: Sendable {
    let data: ByteBuffer
    let from: String
    let recipients: [String]
    /// Outcomes decided before sending (invalid addresses); the rest are added by the session.
    let initial: [String: SMTPOutcome]
    let done: CheckedContinuation<[String: SMTPOutcome], Never>
    /// Handed back once already (its connection failed before any of its message was sent).
    var retried = false

    func finish(_ outcomes: [String: SMTPOutcome]) { done.resume(returning: initial.merging(outcomes) { $1 }) }
    /// Every recipient gets `outcome` (recipients are distinct: `send` lists each address once).
    func finish(all outcome: SMTPOutcome) { finish(Dictionary(uniqueKeysWithValues: recipients.map { ($0, outcome) })) }
}

/// Sends mail through one relay with a small pool of reusable, authenticated connections. Messages
/// wait in one queue; each connection takes the next while it has work and, when the relay offers
/// PIPELINING, sends a message's end together with the next message's envelope (one round trip
/// per message on a busy connection).
public final class SMTPClient: Sendable {
    public let configuration: SMTPConfiguration
    private let group: any EventLoopGroup
    private let tls: NIOSSLContext?
    private let maxConnections: Int

    private struct State {
        var queue = CircularBuffer<SMTPJob>()
        var idle: [SMTPSession] = []
        /// Connections at work (each a task taking jobs from the queue), at most `maxConnections`.
        var drivers = 0
        /// After `shutdown`: connections that finish their work say QUIT instead of waiting in the pool.
        var closed = false
        /// `shutdown` calls waiting for the connections at work to finish (and say QUIT).
        var drainWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var lastWaiter = 0
    }
    private let state = NIOLockedValueBox(State())

    public init(configuration: SMTPConfiguration, maxConnections: Int = 4,
                eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.configuration = configuration
        self.group = eventLoopGroup
        self.maxConnections = max(1, maxConnections)
        if configuration.security == .none {
            tls = nil
        } else {
            var tlsConfig = TLSConfiguration.makeClientConfiguration()
            tlsConfig.certificateVerification = .fullVerification
            if let ca = configuration.caFile { tlsConfig.additionalTrustRoots = [.file(ca)] }
            tls = try NIOSSLContext(configuration: tlsConfig)
        }
    }

    /// Renders and sends `message` to its `to` addresses. Every recipient gets an outcome.
    /// Rendering and encoding run on the caller's executor, in parallel.
    public func send(_ message: MailMessage) async -> [String: SMTPOutcome] {
        await send(from: message.from.address, to: message.to.map(\.address)) { DotStuffing.encode(message.renderBuffer()) }
    }

    /// Sends an already rendered message with an explicit envelope.
    public func send(raw: String, from: String, to recipients: [String]) async -> [String: SMTPOutcome] {
        await send(from: from, to: recipients) { DotStuffing.encode(raw) }
    }

    private func send(from: String, to recipients: [String], data: () -> ByteBuffer) async -> [String: SMTPOutcome] {
        var results: [String: SMTPOutcome] = [:]
        var seen = Set<String>()
        let valid = recipients.filter { MailAddress.isValid($0) && seen.insert($0).inserted } // each address once per message
        for r in recipients where !MailAddress.isValid(r) { results[r] = .permanent(reason: "invalid recipient address") }
        guard MailAddress.isValid(from) else {
            for r in recipients { results[r] = .permanent(reason: "invalid sender address") }
            return results
        }
        guard !valid.isEmpty else { return results }
        let data = data()
        return await withCheckedContinuation { done in
            enqueue(SMTPJob(data: data, from: from, recipients: valid, initial: results, done: done))
        }
    }

    private func enqueue(_ job: SMTPJob, first: Bool = false) {
        let start = state.withLockedValue { s in
            if first { s.queue.prepend(job) } else { s.queue.append(job) }
            guard s.drivers < maxConnections else { return false }
            s.drivers += 1
            return true
        }
        if start { Task { await drive() } }
    }

    /// The next job, or nil (and this driver stops) when the queue is empty.
    private func take() -> SMTPJob? {
        let (job, drained) = state.withLockedValue { s -> (SMTPJob?, [CheckedContinuation<Void, Never>]) in
            if let job = s.queue.popFirst() { return (job, []) }
            s.drivers -= 1
            guard s.drivers == 0 else { return (nil, []) }
            defer { s.drainWaiters = [:] }
            return (nil, Array(s.drainWaiters.values))
        }
        for waiter in drained { waiter.resume() }
        return job
    }

    /// A job for the connection at hand, if one is waiting (the driver goes on either way).
    private func takeIfWaiting() -> SMTPJob? {
        state.withLockedValue { $0.queue.popFirst() }
    }

    /// A job whose connection failed before any of its message was sent: queued again at the front
    /// once (a pooled connection may have been closed by the server while idle), then failed.
    private func handBack(_ job: SMTPJob, reason: SMTPOutcome) {
        guard !job.retried else {
            job.finish(all: reason)
            return
        }
        var again = job
        again.retried = true
        enqueue(again, first: true)
    }

    /// One connection's work: jobs from the queue until it is empty, then the connection goes idle.
    private func drive() async {
        while let job = take() {
            let session: SMTPSession
            // A pooled connection the relay closed while it sat idle is dropped, not tried.
            var pooled: SMTPSession? = nil
            while pooled == nil, let s = state.withLockedValue({ $0.idle.popLast() }) {
                if s.isOpen { pooled = s } else { await s.close() }
            }
            if let s = pooled {
                session = s
            } else {
                do {
                    session = try await SMTPSession.open(configuration, tls: tls, group: group)
                } catch {
                    let outcome = (error as? SMTPFailure)?.outcome ?? .transient(reason: SMTPSession.describe(error))
                    job.finish(all: outcome)
                    continue
                }
            }
            if session.supportsPipelining {
                await session.pipeline(first: job, next: takeIfWaiting, handBack: handBack)
            } else {
                let outcomes = await session.deliver(from: job.from, recipients: job.recipients, data: job.data)
                if !session.isUsable, !session.startedData, outcomes.values.allSatisfy(\.isTransient) {
                    handBack(job, reason: outcomes.values.first ?? .transient(reason: "connection failed"))
                } else {
                    job.finish(outcomes)
                }
            }
            if session.isUsable {
                let keep = state.withLockedValue { s in
                    guard !s.closed, s.idle.count < maxConnections else { return false }
                    s.idle.append(session)
                    return true
                }
                if !keep { await session.quit() }
            }
        }
    }

    /// Politely closes pooled connections, and waits (up to `patience`) for the connections still at
    /// work to finish their messages and say QUIT themselves.
    public func shutdown(patience: Duration = .seconds(10)) async {
        let sessions = state.withLockedValue { s in
            s.closed = true
            let idle = s.idle
            s.idle = []
            return idle
        }
        for s in sessions { await s.quit() }
        // Resumed by the last connection at work to stop, or by the patience running out, whichever comes first.
        let timer = NIOLockedValueBox<Task<Void, Never>?>(nil)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let waiter = state.withLockedValue { s -> Int? in
                if s.drivers == 0 { return nil }
                s.lastWaiter += 1
                s.drainWaiters[s.lastWaiter] = c
                return s.lastWaiter
            }
            guard let waiter else { return c.resume() }
            timer.withLockedValue {
                $0 = Task {
                    try? await Task.sleep(for: patience)
                    guard !Task.isCancelled else { return }
                    state.withLockedValue { $0.drainWaiters.removeValue(forKey: waiter) }?.resume()
                }
            }
        }
        timer.withLockedValue { $0?.cancel() }
    }
}
