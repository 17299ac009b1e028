import NIOCore
import NIOPosix
import NIOSSL

/// Sends mail through one relay with a small pool of reusable, authenticated connections.
public actor SMTPClient {
    public let configuration: SMTPConfiguration
    private let group: any EventLoopGroup
    private let tls: NIOSSLContext?
    private let maxConnections: Int
    private var idle: [SMTPSession] = []
    private var active = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

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
    /// Rendering and encoding run on the caller's executor, in parallel; only the pool is the actor's.
    public nonisolated func send(_ message: MailMessage) async -> [String: SMTPOutcome] {
        await send(raw: message.render(), from: message.from.address, to: message.to.map(\.address))
    }

    /// Sends an already rendered message with an explicit envelope.
    public nonisolated func send(raw: String, from: String, to recipients: [String]) async -> [String: SMTPOutcome] {
        var results: [String: SMTPOutcome] = [:]
        let valid = recipients.filter(MailAddress.isValid)
        for r in recipients where !MailAddress.isValid(r) { results[r] = .permanent(reason: "invalid recipient address") }
        guard MailAddress.isValid(from) else {
            for r in recipients { results[r] = .permanent(reason: "invalid sender address") }
            return results
        }
        guard !valid.isEmpty else { return results }
        return await deliver(DotStuffing.encode(raw), from: from, to: valid, results: results)
    }

    private func deliver(_ data: ByteBuffer, from: String, to valid: [String], results: [String: SMTPOutcome]) async -> [String: SMTPOutcome] {
        var results = results
        await acquireSlot()
        defer { releaseSlot() }
        // A pooled connection may have been closed by the server while idle: if it fails before the
        // transaction starts, try once more on a fresh connection.
        for attempt in 0..<2 {
            let reused = !idle.isEmpty
            let session: SMTPSession
            if let s = idle.popLast() {
                session = s
            } else {
                do {
                    session = try await SMTPSession.open(configuration, tls: tls, group: group)
                } catch {
                    let outcome = (error as? SMTPFailure)?.outcome ?? .transient(reason: SMTPSession.describe(error))
                    for r in valid { results[r] = outcome }
                    return results
                }
            }
            let outcomes = await session.deliver(from: from, recipients: valid, data: data)
            if session.isUsable {
                if idle.count < maxConnections { idle.append(session) } else { await session.quit() }
            }
            let failedEarly = !session.isUsable && reused && outcomes.values.allSatisfy(\.isTransient)
            if failedEarly && attempt == 0 { continue }
            results.merge(outcomes) { $1 }
            break
        }
        return results
    }

    /// Politely closes pooled connections.
    public func shutdown() async {
        let sessions = idle
        idle = []
        for s in sessions { await s.quit() }
    }

    private func acquireSlot() async {
        if active < maxConnections { active += 1; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func releaseSlot() {
        if waiting.isEmpty { active -= 1 } else { waiting.removeFirst().resume() }
    }
}
