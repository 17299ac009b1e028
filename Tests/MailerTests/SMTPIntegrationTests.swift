import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import Mailer

/// The real peers scripts/mail/start_peers.sh starts (strict aiosmtpd sink, Exim), described by
/// environment variables. scripts/test sets REQUIRE_MAIL_PEERS=1 so missing peers fail the run.
enum Peers {
    static let env = ProcessInfo.processInfo.environment
    static var available: Bool { env["SMTP_SINK_PORT"] != nil || env["REQUIRE_MAIL_PEERS"] == "1" }
    static func value(_ key: String) throws -> String {
        guard let v = env[key], !v.isEmpty else { throw PeerError.missing(key) }
        return v
    }
    enum PeerError: Error { case missing(String), notDelivered(String), parserFailed(String) }

    static func sink(host: String = "localhost", portKey: String = "SMTP_SINK_PORT", security: SMTPConfiguration.Security = .starttls,
                     password: String? = nil) throws -> SMTPConfiguration {
        SMTPConfiguration(host: host, port: Int(try value(portKey))!, security: security,
                          username: try value("SMTP_SINK_USER"), password: try password ?? value("SMTP_SINK_PASSWORD"),
                          caFile: try value("SMTP_TEST_CA_FILE"), heloName: "tests.local",
                          timeouts: .init(connect: 5, reply: 10, dataEnd: 10))
    }

    /// The sink's stored message whose envelope names `recipient`.
    static func sinkMessage(for recipient: String) async throws -> (eml: String, envelope: [String: Any]) {
        let dir = try value("SMTP_SINK_DIR")
        for _ in 0..<50 {
            for file in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where file.hasSuffix(".json") {
                let path = dir + "/" + file
                guard let data = FileManager.default.contents(atPath: path),
                      let envelope = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                      (envelope["rcpt_tos"] as? [String])?.contains(recipient) == true else { continue }
                return (String(path.dropLast(5)) + ".eml", envelope)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PeerError.notDelivered(recipient)
    }

    /// Exim's Maildir file holding `messageID`.
    static func eximMessage(messageID: String) async throws -> String {
        let root = try value("EXIM_MAILDIR") + "/new" // tmp/ holds files still being written
        for _ in 0..<50 {
            let enumerator = FileManager.default.enumerator(atPath: root)
            while let file = enumerator?.nextObject() as? String {
                let path = root + "/" + file
                if let content = try? String(contentsOfFile: path, encoding: .utf8), content.contains("<\(messageID)>") { return path }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PeerError.notDelivered(messageID)
    }

    /// Python's `email` package (policy.default) reading the file back.
    static func parse(_ path: String) throws -> [String: Any] {
        let command = try value("MAIL_PARSE").split(separator: " ").map(String.init)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst()) + [path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]], let first = list.first else {
            throw PeerError.parserFailed(String(decoding: data, as: UTF8.self))
        }
        return first
    }

    static func unique(_ local: String) -> String { "\(local)-\(UUID().uuidString.prefix(8).lowercased())@example.com" }
}

@Suite(.enabled(if: Peers.available, "start scripts/mail/start_peers.sh (scripts/test does)"))
struct SMTPIntegrationTests {
    static let tricky = "Zoë Ångström-Nuñez 🏋️"

    static func richMessage(to recipients: [MailAddress]) -> MailMessage {
        let title = #"Leg day <b>& "friends"</b> 🔴"#
        let text = """
        Hi \(tricky),
        Casey just started a live stream!
        📺 Title: \(title)
        .a line that starts with a dot
        ..and one with two
        \(String(repeating: "1234567890", count: 1_000))
        🏋️ Workout Type: Strength
        Join now: https://fit.example.com/live/abc
        """
        let html = "<p>Hi \(HTML.escape(tricky)),</p><p>📺 Title: \(HTML.escape(title))</p><p>.dot</p>"
        let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\nBEGIN:VEVENT\r\nUID:abc@fit.example.com\r\nSUMMARY:Leg day 🔴\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        return MailMessage(
            from: MailAddress("live@fit.example.com", name: "Casey Coach ⏰ Café"), to: recipients,
            subject: "🔴 \(tricky) is LIVE NOW! 📅 ⏰ 📺 🏋️ 🕐 — a subject long enough to need several encoded words",
            text: text, html: html, calendar: .init(method: .publish, ics: ics),
            headers: [.init("List-Unsubscribe", "<https://api.fit.example.com/api/unsubscribe/t0k3n>"),
                      .init("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    }

    static func checkRoundTrip(_ parsed: [String: Any], _ message: MailMessage) {
        #expect(parsed["subject"] as? String == message.subject)
        #expect((parsed["from"] as? [String: Any])?["name"] as? String == message.from.name)
        #expect((parsed["from"] as? [String: Any])?["address"] as? String == message.from.address)
        #expect((parsed["to"] as? [[String: Any]])?.map { $0["name"] as? String } == message.to.map(\.name))
        #expect((parsed["defects"] as? [Any])?.isEmpty == true, "defects: \(parsed["defects"] ?? "")")
        #expect(parsed["structure"] as? String == "multipart/mixed[multipart/alternative[text/plain,text/html],text/calendar]")
        #expect(parsed["has_bare_lf"] as? Bool == false)
        // Our header lines stay ≤ 76 octets (relays add their own Received: lines; those are theirs).
        let ours = (parsed["headers"] as? [[String]] ?? []).filter { !["received", "return-path", "envelope-to", "delivery-date"].contains($0[0].lowercased()) }
        #expect(!ours.isEmpty)
        for header in ours {
            for line in (header[0] + ": " + header[1]).components(separatedBy: .newlines) { #expect(line.utf8.count <= 76, "\(line)") }
        }
        #expect((parsed["body_line_max"] as? Int ?? 999) <= 998)
        let parts = parsed["parts"] as? [[String: Any]] ?? []
        #expect(parts.map { $0["charset"] as? String } == ["utf-8", "utf-8", "utf-8"])
        #expect((parts.first?["content"] as? String)?.replacingOccurrences(of: "\r\n", with: "\n").trimmingCharacters(in: .newlines) == message.text)
        #expect((parts.dropFirst().first?["content"] as? String)?.trimmingCharacters(in: .newlines) == message.html)
        #expect((parts.last?["content"] as? String)?.replacingOccurrences(of: "\r\n", with: "\n") == message.calendar?.ics.replacingOccurrences(of: "\r\n", with: "\n"))
        #expect((parts.last?["params"] as? [String: String])?["method"] == "PUBLISH")
        #expect(parts.last?["filename"] as? String == "invite.ics")
        #expect((parsed["message_id"] as? String) == "<\(message.messageID)>")
    }

    @Test func richMessageThroughStrictSinkWithSTARTTLS() async throws {
        let client = try SMTPClient(configuration: try Peers.sink())
        let a = Peers.unique("ana"), b = Peers.unique("bo")
        let message = Self.richMessage(to: [MailAddress(a, name: Self.tricky), MailAddress(b, name: "Bo Ørsted")])
        let outcomes = await client.send(message)
        #expect(outcomes[a]?.isAccepted == true, "\(outcomes)")
        #expect(outcomes[b]?.isAccepted == true)
        let (eml, envelope) = try await Peers.sinkMessage(for: a)
        #expect(envelope["tls"] as? Bool == true)
        #expect(envelope["auth_user"] as? String == (try Peers.value("SMTP_SINK_USER")))
        #expect(envelope["mail_from"] as? String == "live@fit.example.com")
        Self.checkRoundTrip(try Peers.parse(eml), message)
        await client.shutdown()
    }

    @Test func implicitTLSToAnIPAddress() async throws {
        // 127.0.0.1: no SNI, and the certificate's IP SAN is what gets verified.
        let client = try SMTPClient(configuration: try Peers.sink(host: "127.0.0.1", portKey: "SMTP_SINK_TLS_PORT", security: .tls))
        let to = Peers.unique("ip")
        let outcomes = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "Über TLS", text: "hi"))
        #expect(outcomes[to]?.isAccepted == true, "\(outcomes)")
        let (eml, _) = try await Peers.sinkMessage(for: to)
        #expect(try Peers.parse(eml)["subject"] as? String == "Über TLS")
        await client.shutdown()
    }

    @Test func severalMessagesShareTheConnectionPool() async throws {
        let client = try SMTPClient(configuration: try Peers.sink(), maxConnections: 2)
        let recipients = (0..<6).map { Peers.unique("pool\($0)") }
        try await withThrowingTaskGroup(of: [String: SMTPOutcome].self) { group in
            for r in recipients {
                group.addTask { await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(r)], subject: "n", text: ".")) }
            }
            for try await outcome in group {
                let allAccepted = outcome.values.allSatisfy { $0.isAccepted }
                #expect(allAccepted, "\(outcome)")
            }
        }
        for r in recipients { _ = try await Peers.sinkMessage(for: r) }
        await client.shutdown()
    }

    @Test func perRecipientOutcomes() async throws {
        let client = try SMTPClient(configuration: try Peers.sink())
        let ok = Peers.unique("ok"), temp = Peers.unique("tempfail"), gone = Peers.unique("reject")
        let outcomes = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [ok, temp, gone].map { MailAddress($0) }, subject: "s", text: "t"))
        #expect(outcomes[ok]?.isAccepted == true, "\(outcomes)")
        #expect(outcomes[temp]?.isTransient == true)
        #expect(outcomes[gone]?.isPermanent == true)
        // The connection is still good for the next message.
        let next = Peers.unique("next")
        #expect(await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(next)], subject: "s", text: "t"))[next]?.isAccepted == true)
        await client.shutdown()
    }

    @Test(arguments: [SMTPConfiguration.AuthMechanism.plain, .login], ["SMTP_SINK", "EXIM"])
    func authMechanisms(mechanism: SMTPConfiguration.AuthMechanism, peer: String) async throws {
        var config = try Peers.sink()
        if peer == "EXIM" {
            config.port = Int(try Peers.value("EXIM_PORT"))!
            config.username = try Peers.value("EXIM_USER")
            config.password = try Peers.value("EXIM_PASSWORD")
        }
        config.authMechanisms = [mechanism]
        let to = Peers.unique("auth-\(mechanism.rawValue.lowercased())")
        let ok = await (try SMTPClient(configuration: config)).send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))
        #expect(ok[to]?.isAccepted == true, "\(ok)")
        config.password = "wrong-password"
        let bad = await (try SMTPClient(configuration: config)).send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))
        #expect(bad[to]?.isPermanent == true, "\(bad)")
    }

    @Test func wrongPasswordIsPermanent() async throws {
        let client = try SMTPClient(configuration: try Peers.sink(password: "wrong-password"))
        let to = Peers.unique("auth")
        let outcome = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))[to]
        #expect(outcome?.isPermanent == true, "\(String(describing: outcome))")
    }

    @Test func serverClosingMidDataIsTransient() async throws {
        let client = try SMTPClient(configuration: try Peers.sink())
        let to = Peers.unique("dropdata")
        let outcome = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))[to]
        #expect(outcome?.isTransient == true, "\(String(describing: outcome))")
        // The pool recovers with a fresh connection.
        let next = Peers.unique("after-drop")
        #expect(await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(next)], subject: "s", text: "t"))[next]?.isAccepted == true)
    }

    @Test func certificateForAnotherHostFails() async throws {
        let client = try SMTPClient(configuration: try Peers.sink(portKey: "SMTP_SINK_WRONGCERT_PORT"))
        let to = Peers.unique("tls")
        let outcome = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))[to]
        guard case .transient(let reason) = outcome else { Issue.record("expected transient, got \(String(describing: outcome))"); return }
        #expect(reason.contains("TLS"), "\(reason)")
    }

    @Test func untrustedCertificateFails() async throws {
        var config = try Peers.sink()
        config.caFile = nil // only the system roots: the test CA is unknown
        let client = try SMTPClient(configuration: config)
        let to = Peers.unique("untrusted")
        let outcome = await client.send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))[to]
        #expect(outcome?.isTransient == true, "\(String(describing: outcome))")
    }

    @Test func refusedConnectionIsTransient() async throws {
        var config = try Peers.sink()
        config.port = 1 // nothing listens there
        let to = Peers.unique("refused")
        let outcome = await (try SMTPClient(configuration: config)).send(MailMessage(from: MailAddress("live@fit.example.com"), to: [MailAddress(to)], subject: "s", text: "t"))[to]
        #expect(outcome?.isTransient == true)
    }

    @Test func eximWithPipelining() async throws {
        let config = SMTPConfiguration(host: "localhost", port: Int(try Peers.value("EXIM_PORT"))!, security: .starttls,
                                       username: try Peers.value("EXIM_USER"), password: try Peers.value("EXIM_PASSWORD"),
                                       caFile: try Peers.value("SMTP_TEST_CA_FILE"), heloName: "tests.local")
        let client = try SMTPClient(configuration: config)
        let recipients = [MailAddress(Peers.unique("exim1"), name: Self.tricky), MailAddress(Peers.unique("exim2"), name: "Eve")]
        let message = Self.richMessage(to: recipients)
        let outcomes = await client.send(message)
        #expect(outcomes.count == 2 && outcomes.values.allSatisfy(\.isAccepted), "\(outcomes)")
        Self.checkRoundTrip(try Peers.parse(try await Peers.eximMessage(messageID: message.messageID)), message)
        await client.shutdown()
    }

    /// Several messages queued on one pipelining connection over STARTTLS: each message's data goes out
    /// as its own buffer ahead of the next envelope (two TLS records in one flush); every message arrives whole.
    @Test func eximPipelinesQueuedMessagesOverTLS() async throws {
        let config = SMTPConfiguration(host: "localhost", port: Int(try Peers.value("EXIM_PORT"))!, security: .starttls,
                                       username: try Peers.value("EXIM_USER"), password: try Peers.value("EXIM_PASSWORD"),
                                       caFile: try Peers.value("SMTP_TEST_CA_FILE"), heloName: "tests.local")
        let client = try SMTPClient(configuration: config, maxConnections: 1)
        let messages = (0..<4).map { i in Self.richMessage(to: [MailAddress(Peers.unique("eximq\(i)"), name: "Q\(i)")]) }
        let outcomes = await withTaskGroup(of: [String: SMTPOutcome].self) { group in
            for m in messages { group.addTask { await client.send(m) } }
            return await group.reduce(into: [[String: SMTPOutcome]]()) { $0.append($1) }
        }
        #expect(outcomes.count == 4 && outcomes.allSatisfy { $0.count == 1 && $0.values.allSatisfy(\.isAccepted) }, "\(outcomes)")
        for m in messages {
            Self.checkRoundTrip(try Peers.parse(try await Peers.eximMessage(messageID: m.messageID)), m)
        }
        await client.shutdown()
    }
}

/// A server that accepts and then says nothing: every reply wait must time out.
@Suite struct SMTPTimeoutTests {
    final class Silent: ChannelInboundHandler, Sendable { typealias InboundIn = ByteBuffer }

    @Test func silentServerTimesOut() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Silent()) } }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        let config = SMTPConfiguration(host: "127.0.0.1", port: port, security: .none, timeouts: .init(connect: 2, reply: 0.5, dataEnd: 0.5))
        let started = Date()
        let outcome = await (try SMTPClient(configuration: config)).send(raw: "Subject: x\r\n\r\nx\r\n", from: "a@example.com", to: ["b@example.com"])["b@example.com"]
        #expect(outcome?.isTransient == true)
        // It gives up (0.5 s reply timeout) rather than hanging; the bound is loose because the whole
        // suite shares the event loops on 2 cores (7.6 s was seen on a loaded clean-clone run).
        #expect(Date().timeIntervalSince(started) < 30)
        try await server.close()
    }
}

/// A scripted in-process server for paths the real peers never take: no EHLO (HELO fallback),
/// plain connections, a 421 greeting.
@Suite struct SMTPScriptedServerTests {
    final class Script: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let greeting: String
        let log: Log
        /// Offer PIPELINING; RCPT to reject* gets 550, to tempfail* 451; DATA with no accepted recipient 554;
        /// MAIL inside an open transaction 503 (logged as NESTED MAIL); each read is logged as READ: <its lines>.
        let pipelining: Bool
        /// Hang up after every message (a relay that limits messages per connection, or one restarted while we were idle).
        let closeAfterMessage: Bool
        /// Answer a message's end this much later (a relay scanning it).
        let dataEndDelay: TimeAmount?
        private var buffer = ""
        private var inData = false
        private var inTransaction = false
        private var accepted = 0
        init(greeting: String, log: Log, pipelining: Bool = false, closeAfterMessage: Bool = false, dataEndDelay: TimeAmount? = nil) {
            self.greeting = greeting; self.log = log; self.pipelining = pipelining; self.closeAfterMessage = closeAfterMessage
            self.dataEndDelay = dataEndDelay
        }

        func channelActive(context: ChannelHandlerContext) { send(context, greeting) }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var bytes = unwrapInboundIn(data)
            buffer += bytes.readString(length: bytes.readableBytes) ?? ""
            var lines: [String] = []
            while let range = buffer.range(of: "\r\n") {
                let line = String(buffer[..<range.lowerBound])
                buffer.removeSubrange(..<range.upperBound)
                lines.append(line)
                log.append(line)
                if inData {
                    if line == ".", let delay = dataEndDelay {
                        inData = false; inTransaction = false
                        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                        context.eventLoop.scheduleTask(in: delay) { self.send(bound.value, "250 queued") }
                    } else if line == "." {
                        inData = false; inTransaction = false; send(context, "250 queued")
                        if closeAfterMessage { buffer = ""; context.close(promise: nil); return }
                    }
                    continue
                }
                switch line.prefix(4).uppercased() {
                case "EHLO": send(context, pipelining ? "250-new.example.com\r\n250 PIPELINING" : "502 5.5.1 EHLO not implemented")
                case "HELO": send(context, "250 ok")
                case "RSET": inTransaction = false; accepted = 0; send(context, "250 ok")
                case "MAIL":
                    if pipelining && inTransaction { log.append("NESTED MAIL"); send(context, "503 5.5.1 nested MAIL command"); continue }
                    inTransaction = true; accepted = 0; send(context, "250 ok")
                case "RCPT":
                    if line.contains(":<reject") { send(context, "550 5.1.1 no such user") }
                    else if line.contains(":<tempfail") { send(context, "451 4.3.0 try later") }
                    else { accepted += 1; send(context, "250 ok") }
                case "DATA":
                    if pipelining && accepted == 0 { send(context, "554 5.5.1 no valid recipients"); continue }
                    inData = true; send(context, "354 go ahead")
                case "QUIT": send(context, "221 bye"); context.close(promise: nil)
                default: send(context, "500 what")
                }
            }
            if pipelining { log.append("READ: " + lines.joined(separator: " | ")) }
        }

        private func send(_ context: ChannelHandlerContext, _ line: String) {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line + "\r\n")), promise: nil)
        }
    }

    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func append(_ l: String) { lock.withLock { lines.append(l) } }
        var all: [String] { lock.withLock { lines } }
    }

    func withServer(greeting: String, pipelining: Bool = false, closeAfterMessage: Bool = false, dataEndDelay: TimeAmount? = nil,
                    _ body: (Int, Log) async throws -> Void) async throws {
        let log = Log()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Script(greeting: greeting, log: log, pipelining: pipelining,
                                                                                                    closeAfterMessage: closeAfterMessage, dataEndDelay: dataEndDelay)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        do { try await body(server.localAddress!.port!, log) } catch { try? await server.close(); throw error }
        try await server.close()
    }

    /// `shutdown` while a connection is at work (its message's end sent, the relay's answer not yet
    /// back): it waits for that message's outcome and the connection's QUIT — within its patience.
    @Test func shutdownWaitsForAConnectionAtWorkToFinishAndSayQuit() async throws {
        try await withServer(greeting: "220 slow.example.com ESMTP", dataEndDelay: .milliseconds(500)) { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none), maxConnections: 1)
            let sending = Task { await client.send(raw: "Subject: s\r\n\r\nbody\r\n", from: "a@example.com", to: ["b@example.com"]) }
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while !log.all.contains("."), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            await client.shutdown(patience: .seconds(120))
            #expect(log.all.last == "QUIT", "shutdown returned before the connection at work said QUIT: \(log.all.suffix(3))")
            #expect(await sending.value["b@example.com"] == .accepted(reply: "250 queued"))
        }
    }

    @Test func shutdownWaitsNoLongerThanItsPatience() async throws {
        try await withServer(greeting: "220 slow.example.com ESMTP", dataEndDelay: .seconds(5)) { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none), maxConnections: 1)
            let done = Log()
            let sending = Task {
                let outcome = await client.send(raw: "Subject: s\r\n\r\nbody\r\n", from: "a@example.com", to: ["b@example.com"])
                done.append("sent")
                return outcome
            }
            let deadline = ContinuousClock.now.advanced(by: .seconds(60))
            while !log.all.contains("."), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            await client.shutdown(patience: .milliseconds(200))
            #expect(done.all.isEmpty, "shutdown waited for the message's answer (5 s) past its patience (200 ms)")
            #expect(await sending.value["b@example.com"] == .accepted(reply: "250 queued"))
        }
    }

    @Test func heloFallbackDotStuffingAndRsetBetweenMessages() async throws {
        try await withServer(greeting: "220 old.example.com ESMTP") { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none), maxConnections: 1)
            for i in 0..<2 {
                let outcome = await client.send(raw: "Subject: \(i)\r\n\r\n.leading dot\r\nend\r\n", from: "a@example.com", to: ["b@example.com"])
                #expect(outcome["b@example.com"] == .accepted(reply: "250 queued"))
            }
            // A connection still finishing its last message when `shutdown` ran says QUIT itself, once done,
            // and `shutdown` waits for it.
            await client.shutdown(patience: .seconds(120))
            let lines = log.all
            #expect(lines.first == "EHLO localhost")
            #expect(lines.dropFirst().first == "HELO localhost")
            #expect(lines.contains("..leading dot"))
            // One connection; a completed transaction needs no RSET before the next MAIL (RFC 5321 §3.3).
            #expect(lines.filter { $0 == "RSET" }.count == 0)
            #expect(lines.filter { $0.hasPrefix("MAIL FROM") }.count == 2)
            #expect(lines.last == "QUIT")
        }
    }

    /// Many messages on one pipelining connection: each message's end goes out with the next envelope
    /// (seen in one read by the server), a transaction cut short (every recipient refused) is followed
    /// by RSET before the next MAIL, and every recipient gets its own outcome.
    @Test func pipelinedMessagesShareRoundTripsAndRecoverFromRefusedRecipients() async throws {
        try await withServer(greeting: "220 new.example.com ESMTP", pipelining: true) { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none), maxConnections: 1)
            let envelopes: [[String]] = (0..<40).map { i in
                switch i % 10 {
                case 3: ["reject\(i)@example.com"]
                case 6: ["tempfail\(i)@example.com", "reject\(i)@example.com"]
                case 8: ["m\(i)@example.com", "reject\(i)@example.com", "tempfail\(i)@example.com"]
                default: ["m\(i)@example.com"]
                }
            }
            let outcomes = await withTaskGroup(of: [String: SMTPOutcome].self) { group in
                for (i, to) in envelopes.enumerated() {
                    group.addTask { await client.send(raw: "Subject: \(i)\r\n\r\n.leading dot \(i)\r\n", from: "a@example.com", to: to) }
                }
                return await group.reduce(into: [:]) { $0.merge($1) { a, _ in a } }
            }
            await client.shutdown()
            #expect(outcomes.count == envelopes.joined().count)
            for (address, outcome) in outcomes {
                if address.hasPrefix("reject") { #expect(outcome.isPermanent, "\(address): \(outcome)") }
                else if address.hasPrefix("tempfail") { #expect(outcome.isTransient, "\(address): \(outcome)") }
                else { #expect(outcome == .accepted(reply: "250 queued"), "\(address): \(outcome)") }
            }
            let lines = log.all
            #expect(!lines.contains("NESTED MAIL"))
            #expect(lines.filter { $0.hasPrefix("MAIL FROM") }.count == 40)
            #expect(lines.filter { $0.hasPrefix("..leading dot") }.count == 32) // 8 messages had no recipient accepted
            #expect(lines.filter { $0 == "RSET" }.count >= 7) // after each of those 8, unless it was the last
            // Pipelined: a message's end and the next MAIL arrived in one read, repeatedly.
            let joined = lines.filter { $0.hasPrefix("READ: ") && $0.contains(". | MAIL FROM") }
            #expect(joined.count >= 10, "\(lines.filter { $0.hasPrefix("READ: ") }.prefix(10))")
        }
    }

    /// A relay that hangs up after each message: the next message's envelope, already pipelined behind
    /// the first message's end, gets no answer; that message was not sent, so it goes again on a new
    /// connection (once), and every message arrives exactly once.
    @Test func aMessageWhoseConnectionClosedBeforeItsDataIsSentAgainOnANewConnection() async throws {
        try await withServer(greeting: "220 new.example.com ESMTP", pipelining: true, closeAfterMessage: true) { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none), maxConnections: 1)
            let outcomes = await withTaskGroup(of: [String: SMTPOutcome].self) { group in
                for i in 0..<6 { group.addTask { await client.send(raw: "Subject: \(i)\r\n\r\nbody \(i)\r\n", from: "a@example.com", to: ["m\(i)@example.com"]) } }
                return await group.reduce(into: [:]) { $0.merge($1) { a, _ in a } }
            }
            await client.shutdown()
            #expect(outcomes.count == 6 && outcomes.values.allSatisfy { $0 == .accepted(reply: "250 queued") }, "\(outcomes)")
            #expect((0..<6).allSatisfy { i in log.all.filter { $0 == "body \(i)" }.count == 1 })
        }
    }

    /// An address listed twice is one recipient with one outcome, also when the relay cannot be reached
    /// (building the outcomes once crashed on the duplicate key).
    @Test func aRecipientListedTwiceGetsOneOutcomeEvenWhenTheRelayIsDown() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        try await server.close() // nothing listens there now
        let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none))
        let outcome = await client.send(raw: "Subject: x\r\n\r\nx\r\n", from: "a@example.com", to: ["b@example.com", "b@example.com"])
        #expect(outcome.count == 1 && outcome["b@example.com"]?.isTransient == true, "\(outcome)")
        try await withServer(greeting: "220 new.example.com ESMTP", pipelining: true) { port, log in
            let client = try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none))
            let outcome = await client.send(raw: "Subject: x\r\n\r\nx\r\n", from: "a@example.com", to: ["b@example.com", "b@example.com"])
            #expect(outcome == ["b@example.com": .accepted(reply: "250 queued")])
            #expect(log.all.filter { $0.hasPrefix("RCPT TO") }.count == 1)
            await client.shutdown()
        }
    }

    @Test func busyGreetingIsTransient() async throws {
        try await withServer(greeting: "421 4.3.2 too busy") { port, _ in
            let outcome = await (try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .none)))
                .send(raw: "Subject: x\r\n\r\nx\r\n", from: "a@example.com", to: ["b@example.com"])
            #expect(outcome["b@example.com"]?.isTransient == true)
        }
    }

    @Test func plainServerWithoutSTARTTLSIsRefusedWhenTLSIsRequired() async throws {
        try await withServer(greeting: "220 hi") { port, log in
            let outcome = await (try SMTPClient(configuration: SMTPConfiguration(host: "127.0.0.1", port: port, security: .starttls)))
                .send(raw: "Subject: x\r\n\r\nx\r\n", from: "a@example.com", to: ["b@example.com"])
            #expect(outcome["b@example.com"]?.isTransient == true)
            #expect(!log.all.contains { $0.hasPrefix("MAIL") }) // nothing sent in clear text
        }
    }
}
