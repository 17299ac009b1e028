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
    private(set) var messagesSent = 0
    /// The last transaction was cut short: RSET before the next MAIL.
    private var needsReset = false
    private(set) var isUsable = true

    private init(connection: SMTPConnection, config: SMTPConfiguration) {
        self.connection = connection
        self.config = config
    }

    var supportsPipelining: Bool { capabilities["PIPELINING"] != nil }
    private var replyTimeout: TimeAmount { .milliseconds(Int64(config.timeouts.reply * 1000)) }

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

    /// Sends one message to `recipients`; returns an outcome for every recipient.
    func deliver(from: String, recipients: [String], data: ByteBuffer) async -> [String: SMTPOutcome] {
        var results: [String: SMTPOutcome] = [:]
        do {
            // A transaction that ended with the reply to its data leaves the session ready for the next
            // MAIL (RFC 5321 §3.3); only one cut short (rejected MAIL, RCPT or DATA) needs RSET.
            if needsReset {
                let reset = try await connection.command("RSET", timeout: replyTimeout)
                guard reset.code == 250 else { throw SMTPFailure(outcome: .transient(reason: reset.description)) }
                needsReset = false
            }
            needsReset = true
            let mailCommand = "MAIL FROM:<\(from)>"
            var rcptReplies: [SMTPReply] = []
            let mailReply: SMTPReply
            var dataReply: SMTPReply?
            if supportsPipelining {
                // RFC 2920: MAIL, every RCPT and DATA in one batch (DATA may end a group), replies read in
                // order: one round trip before the message instead of two.
                connection.send(ByteBuffer(string: ([mailCommand] + recipients.map { "RCPT TO:<\($0)>" } + ["DATA"]).map { $0 + "\r\n" }.joined()))
                let replies = try await connection.replies(recipients.count + 2, timeout: replyTimeout)
                mailReply = replies[0]
                rcptReplies = Array(replies[1...recipients.count])
                dataReply = replies[recipients.count + 1]
            } else {
                mailReply = try await connection.command(mailCommand, timeout: replyTimeout)
                if mailReply.code == 250 {
                    for r in recipients { rcptReplies.append(try await connection.command("RCPT TO:<\(r)>", timeout: replyTimeout)) }
                }
            }
            var accepted: [String] = []
            if mailReply.code == 250 {
                for (recipient, reply) in zip(recipients, rcptReplies) {
                    if reply.code == 250 || reply.code == 251 { accepted.append(recipient) } else { results[recipient] = reply.failure }
                }
            } else {
                for r in recipients { results[r] = mailReply.failure }
            }
            messagesSent += 1
            if accepted.isEmpty {
                // A server that answered the pipelined DATA with 354 anyway gets an empty message (RFC 2920 §3.1).
                if dataReply?.code == 354 {
                    connection.send(ByteBuffer(string: ".\r\n"))
                    _ = try await connection.reply(timeout: replyTimeout)
                }
                return results // never a message without a recipient
            }
            let started: SMTPReply
            if let dataReply { started = dataReply } else { started = try await connection.command("DATA", timeout: replyTimeout) }
            guard started.code == 354 else {
                for r in accepted { results[r] = started.failure }
                return results
            }
            connection.send(data)
            let final = try await connection.reply(timeout: .milliseconds(Int64(config.timeouts.dataEnd * 1000)))
            needsReset = false
            for r in accepted { results[r] = final.code / 100 == 2 ? .accepted(reply: final.description) : final.failure }
        } catch {
            isUsable = false
            let reason = (error as? SMTPFailure).map { "\($0.outcome)" } ?? Self.describe(error)
            for r in recipients where results[r] == nil { results[r] = .transient(reason: reason) }
            Task { [connection] in await connection.close() }
        }
        return results
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
        case let e as SMTPError: e.description
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
        if ready {
            var buffer = ByteBuffer(string: message)
            if !message.utf8.isEmpty, message.utf8.last != 10 { buffer.writeString("\r\n") }
            buffer.writeString(".\r\n")
            return buffer
        }
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
