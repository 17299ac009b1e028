import Foundation
import NIOCore
import NIOSSL

/// A classified failure: transient (retry later) or permanent.
struct SMTPFailure: Error {
    let outcome: SMTPOutcome
    static func transient(_ reason: String) -> SMTPFailure { SMTPFailure(outcome: .transient(reason: reason)) }
}

/// One authenticated SMTP conversation, reusable for several messages (RSET after one cut short).
/// Used by one task at a time (the pool hands it out exclusively).
final class SMTPSession: @unchecked Sendable {
    private let connection: SMTPConnection
    private let config: SMTPConfiguration
    private var capabilities: [String: [String]] = [:]
    /// The last `deliver` sent (some of) its message: a failure after that may have delivered it.
    private(set) var startedData = false
    /// The last transaction was cut short: RSET before the next MAIL.
    private var needsReset = false
    private(set) var isUsable = true
    /// Still connected (a pooled connection may have been closed by the relay while idle).
    var isOpen: Bool { isUsable && connection.channel.isActive }

    private init(connection: SMTPConnection, config: SMTPConfiguration) {
        self.connection = connection
        self.config = config
    }

    var supportsPipelining: Bool { capabilities["PIPELINING"] != nil }
    private var replyTimeout: TimeAmount { .milliseconds(Int64(config.timeouts.reply * 1000)) }
    private var dataEndTimeout: TimeAmount { .milliseconds(Int64(config.timeouts.dataEnd * 1000)) }

    /// Connects, greets, upgrades to TLS and authenticates as configured.
    static func open(_ config: SMTPConfiguration, tls: NIOSSLContext?, group: any EventLoopGroup) async throws -> SMTPSession {
        // Never send an IP address as SNI; NIOSSL then checks the certificate's IP SAN against the peer.
        let serverHostname = isIPAddress(config.host) ? nil : config.host
        let connection: SMTPConnection
        do {
            connection = try await SMTPConnection.connect(
                host: config.host, port: config.port, implicitTLS: config.security == .tls ? tls : nil,
                serverHostname: serverHostname, connectTimeout: .milliseconds(Int64(config.timeouts.connect * 1000)), group: group)
        } catch {
            throw SMTPFailure.transient("cannot connect to \(config.host):\(config.port): \(describe(error))")
        }
        let session = SMTPSession(connection: connection, config: config)
        do {
            try await session.handshake(tls: tls, serverHostname: serverHostname)
            return session
        } catch {
            await connection.close()
            throw (error as? SMTPFailure) ?? SMTPFailure.transient(describe(error))
        }
    }

    private func handshake(tls: NIOSSLContext?, serverHostname: String?) async throws {
        let greeting = try await connection.reply(timeout: replyTimeout)
        guard greeting.code == 220 else { throw SMTPFailure(outcome: greeting.failure) }
        try await hello()
        if config.security == .starttls {
            guard capabilities["STARTTLS"] != nil, let tls else {
                throw SMTPFailure.transient("server does not offer STARTTLS (SMTP_SECURITY=starttls)")
            }
            let reply = try await connection.command("STARTTLS", timeout: replyTimeout)
            guard reply.code == 220 else { throw SMTPFailure(outcome: reply.failure) }
            try await connection.startTLS(context: tls, serverHostname: serverHostname)
            capabilities = [:] // RFC 3207: forget everything learned before TLS
            try await hello()
        }
        if let username = config.username {
            try await authenticate(username: username, password: config.password ?? "")
        }
    }

    private func hello() async throws {
        let ehlo = try await connection.command("EHLO \(config.heloName)", timeout: replyTimeout)
        if ehlo.code == 250 {
            capabilities = [:]
            for line in ehlo.lines.dropFirst() {
                let words = line.split(separator: " ").map(String.init)
                if let keyword = words.first?.uppercased() { capabilities[keyword] = Array(words.dropFirst()) }
            }
            return
        }
        guard ehlo.code >= 500 else { throw SMTPFailure(outcome: ehlo.failure) }
        let helo = try await connection.command("HELO \(config.heloName)", timeout: replyTimeout)
        guard helo.code == 250 else { throw SMTPFailure(outcome: helo.failure) }
        capabilities = [:]
    }

    /// The first configured mechanism the server offers. The text of 334 prompts is never interpreted.
    private func authenticate(username: String, password: String) async throws {
        let offered = Set((capabilities["AUTH"] ?? []).map { $0.uppercased() })
        // A server that lists no mechanisms still gets PLAIN, the one every relay supports.
        let mechanism = config.authMechanisms.first { offered.contains($0.rawValue) } ?? (offered.isEmpty ? .plain : nil)
        guard let mechanism else { throw SMTPFailure(outcome: .permanent(reason: "no common AUTH mechanism (server offers \(offered.sorted()))")) }
        func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
        var reply: SMTPReply
        switch mechanism {
        case .plain:
            reply = try await connection.command("AUTH PLAIN " + b64("\0\(username)\0\(password)"), timeout: replyTimeout)
        case .login:
            reply = try await connection.command("AUTH LOGIN", timeout: replyTimeout)
            if reply.code == 334 { reply = try await connection.command(b64(username), timeout: replyTimeout) }
            if reply.code == 334 { reply = try await connection.command(b64(password), timeout: replyTimeout) }
        }
        guard reply.code == 235 else {
            if reply.code == 334 { _ = try? await connection.command("*", timeout: replyTimeout) }
            throw SMTPFailure(outcome: reply.failure)
        }
    }

    /// Sends one message to `recipients`, one command at a time (a server without PIPELINING; see
    /// `pipeline` for the rest); returns an outcome for every recipient.
    func deliver(from: String, recipients: [String], data: ByteBuffer) async -> [String: SMTPOutcome] {
        var results: [String: SMTPOutcome] = [:]
        startedData = false
        do {
            // A transaction that ended with the reply to its data leaves the session ready for the next
            // MAIL (RFC 5321 §3.3); only one cut short (rejected MAIL, RCPT or DATA) needs RSET.
            if needsReset {
                let reset = try await connection.command("RSET", timeout: replyTimeout)
                guard reset.code == 250 else { throw SMTPFailure(outcome: .transient(reason: reset.description)) }
                needsReset = false
            }
            needsReset = true
            var rcptReplies: [SMTPReply] = []
            let mailReply = try await connection.command("MAIL FROM:<\(from)>", timeout: replyTimeout)
            if mailReply.code == 250 {
                for r in recipients { rcptReplies.append(try await connection.command("RCPT TO:<\(r)>", timeout: replyTimeout)) }
            }
            var accepted: [String] = []
            if mailReply.code == 250 {
                for (recipient, reply) in zip(recipients, rcptReplies) {
                    if reply.code == 250 || reply.code == 251 { accepted.append(recipient) } else { results[recipient] = reply.failure }
                }
            } else {
                for r in recipients { results[r] = mailReply.failure }
            }
            guard !accepted.isEmpty else { return results } // never a message without a recipient
            let started = try await connection.command("DATA", timeout: replyTimeout)
            guard started.code == 354 else {
                for r in accepted { results[r] = started.failure }
                return results
            }
            startedData = true
            connection.send(data)
            let final = try await connection.reply(timeout: dataEndTimeout)
            needsReset = false
            for r in accepted { results[r] = final.dataOutcome }
        } catch {
            isUsable = false
            let reason = Self.describe(error)
            for r in recipients where results[r] == nil { results[r] = .transient(reason: reason) }
            Task { [connection] in await connection.close() }
        }
        return results
    }

    /// Pipelined transactions (RFC 2920, for a server that offers PIPELINING): MAIL, every RCPT and
    /// DATA go in one group, and once the server has answered DATA with 354, the message, its end
    /// and the next waiting message's MAIL, RCPT and DATA go in one write (message content may start
    /// a group, DATA may end one) — one round trip per message while messages are waiting, two when
    /// one arrives alone. Takes jobs from `next` until none is waiting and none is open. If the
    /// connection fails, a message already sent (or partly sent) gets a transient outcome (it may
    /// have arrived: a retry can repeat it), one whose message was not sent goes to `handBack`.
    func pipeline(first: SMTPJob, next: () -> SMTPJob?, handBack: (SMTPJob, SMTPOutcome) -> Void) async {
        /// A job whose DATA got 354: its message goes in the next write. `accepted` nil: no recipient
        /// was accepted, so an empty message ends the transaction (RFC 2920 §3.1).
        var sending: (job: SMTPJob, accepted: [String]?, results: [String: SMTPOutcome])?
        var opening: SMTPJob? = first
        while true {
            if opening == nil { opening = next() }
            guard sending != nil || opening != nil else { return }
            var out = ByteBuffer()
            var count = 0
            // The message being sent (its data as rendered, not copied) goes out ahead of `out`.
            var messageData: ByteBuffer?
            if let s = sending {
                if s.accepted != nil { messageData = s.job.data } else { out.writeStaticString(".\r\n") }
                count += 1
            }
            let reset = opening != nil && needsReset
            if let o = opening {
                if reset { out.writeStaticString("RSET\r\n"); count += 1 }
                out.writeString("MAIL FROM:<\(o.from)>\r\n")
                for r in o.recipients { out.writeString("RCPT TO:<\(r)>\r\n") }
                out.writeStaticString("DATA\r\n")
                count += o.recipients.count + 2
            }
            if let messageData { connection.send(messageData, then: out) } else { connection.send(out) }
            let replies: [SMTPReply]
            do {
                replies = try await connection.replies(count, timeout: sending != nil ? dataEndTimeout : replyTimeout)
            } catch {
                isUsable = false
                let partial = error as? SMTPPartialReplies
                let cause = partial?.error ?? error
                let outcome = SMTPOutcome.transient(reason: Self.describe(cause))
                if let s = sending {
                    // Its final reply may have arrived before the connection ended (a relay that hangs up after a message).
                    var results = s.results
                    if let final = partial?.replies.first {
                        for r in s.accepted ?? [] { results[r] = final.dataOutcome }
                    }
                    for r in s.job.recipients where results[r] == nil { results[r] = outcome }
                    s.job.finish(results)
                }
                if let o = opening { handBack(o, outcome) }
                Task { [connection] in await connection.close() }
                return
            }
            var i = 0
            if let s = sending {
                let final = replies[0]
                var results = s.results
                for r in s.accepted ?? [] { results[r] = final.dataOutcome }
                s.job.finish(results)
                sending = nil
                i = 1
            }
            guard let o = opening else { continue }
            opening = nil
            if reset {
                guard replies[i].code == 250 else {
                    // The conversation is in a state we cannot trust: this connection ends, the job is retried.
                    isUsable = false
                    handBack(o, .transient(reason: replies[i].description))
                    Task { [connection] in await connection.close() }
                    return
                }
                needsReset = false
                i += 1
            }
            let mail = replies[i], data = replies[i + o.recipients.count + 1]
            var results: [String: SMTPOutcome] = [:]
            var accepted: [String] = []
            for (k, r) in o.recipients.enumerated() {
                let reply = mail.code == 250 ? replies[i + 1 + k] : mail
                if reply.code == 250 || reply.code == 251 { accepted.append(r) } else { results[r] = reply.failure }
            }
            if data.code == 354 {
                // The message (or, with no recipient accepted, an empty one) ends this transaction.
                sending = (o, accepted.isEmpty ? nil : accepted, results)
            } else {
                for r in accepted { results[r] = data.failure }
                o.finish(results)
                needsReset = true // cut short: RSET before the next MAIL
            }
        }
    }

    func quit() async {
        _ = try? await connection.command("QUIT", timeout: .seconds(5))
        await connection.close()
    }

    func close() async { await connection.close() }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let e as SMTPFailure: "\(e.outcome)"
        case let e as SMTPError: e.description
        case let e as SMTPPartialReplies: describe(e.error)
        case let e as NIOSSLError: "TLS failure: \(e)"
        case let e as BoringSSLError: "TLS failure: \(e)"
        case let e as NIOSSLExtraError: "TLS failure: \(e)"
        default: String(describing: error)
        }
    }
}

enum DotStuffing {
    /// Normalizes line endings to CRLF, doubles leading dots (RFC 5321 §4.5.2) and appends the
    /// end-of-data marker.
    static func encode(_ message: String) -> ByteBuffer {
        var copy = message
        // What the product renders is already CRLF with no line starting with ".": checked with two
        // memchr scans and copied as it is (this runs for every email).
        let ready = copy.withUTF8 { bytes in isTransparent(bytes) }
        if ready { return ended(ByteBuffer(string: message)) }
        // One pass over the bytes, normalizing and stuffing.
        var out: [UInt8] = []
        copy.withUTF8 { bytes in
            out.reserveCapacity(bytes.count + bytes.count / 40 + 8)
            var atLineStart = true
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if b == 13 || b == 10 {
                    out.append(13); out.append(10)
                    atLineStart = true
                    if b == 13, i + 1 < bytes.count, bytes[i + 1] == 10 { i += 1 }
                } else {
                    if atLineStart && b == 46 { out.append(46) }
                    out.append(b)
                    atLineStart = false
                }
                i += 1
            }
            if !atLineStart { out.append(13); out.append(10) }
        }
        out.append(contentsOf: [46, 13, 10])
        return ByteBuffer(bytes: out)
    }

    /// The same for a rendered buffer: a message that is already transparent gets its end marker
    /// appended in place (no copy); anything else goes through the normalizing pass.
    static func encode(_ message: consuming ByteBuffer) -> ByteBuffer {
        let ready = message.withUnsafeReadableBytes { raw in isTransparent(raw.bindMemory(to: UInt8.self)) }
        guard ready else { return encode(String(buffer: message)) }
        return ended(message) // the caller's rendered buffer, appended to in place
    }

    /// A transparent message with the end-of-data marker (after a final CRLF if it lacks one).
    private static func ended(_ message: consuming ByteBuffer) -> ByteBuffer {
        var buffer = consume message
        if buffer.readableBytes > 0, buffer.getInteger(at: buffer.writerIndex - 1, as: UInt8.self) != 10 { buffer.writeStaticString("\r\n") }
        buffer.writeStaticString(".\r\n")
        return buffer
    }

    /// True when every LF follows a CR, every CR precedes an LF and no line starts with ".".
    static func isTransparent(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return true }
        let n = bytes.count
        if bytes[0] == 46 { return false }
        var i = 0
        while i < n, let hit = memchr(base + i, 10, n - i) {
            let j = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if j == 0 || bytes[j - 1] != 13 || (j + 1 < n && bytes[j + 1] == 46) { return false }
            i = j + 1
        }
        i = 0
        while i < n, let hit = memchr(base + i, 13, n - i) {
            let j = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if j + 1 >= n || bytes[j + 1] != 10 { return false }
            i = j + 1
        }
        return true
    }
}
