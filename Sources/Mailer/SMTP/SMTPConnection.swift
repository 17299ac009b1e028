import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// A pipelined group cut short: the replies that did arrive, in order, and why the rest did not.
struct SMTPPartialReplies: Error {
    let replies: [SMTPReply]
    let error: any Error
}

enum SMTPError: Error, CustomStringConvertible {
    case timeout
    case connectionClosed
    case malformedReply
    case lineTooLong

    var description: String {
        switch self {
        case .timeout: "timed out waiting for the server"
        case .connectionClosed: "connection closed by the server"
        case .malformedReply: "malformed reply from the server"
        case .lineTooLong: "reply line too long"
        }
    }
}

/// One reply line, parsed from its bytes: `code` (nil: not a reply line), continuation or last, text.
struct SMTPReplyLine {
    let code: Int?
    let more: Bool
    let text: String

    init(_ bytes: UnsafeRawBufferPointer) {
        var value = 0, count = 0
        while count < min(3, bytes.count), bytes[count] >= 48, bytes[count] <= 57 { value = value * 10 + Int(bytes[count] - 48); count += 1 }
        code = count == 3 && (bytes.count == 3 || bytes[3] == 32 || bytes[3] == 45) ? value : nil
        more = bytes.count > 3 && bytes[3] == UInt8(ascii: "-")
        text = bytes.count > 4 ? String(decoding: UnsafeRawBufferPointer(rebasing: bytes[4...]), as: UTF8.self) : ""
    }
}

/// Splits the server's bytes into lines (CRLF or LF; bounded, so a broken server cannot make us
/// buffer without limit), assembles (multi-line) replies and hands them out in order, a pipelined
/// group at a time. Lives on the channel's event loop; every method is called there.
final class SMTPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private var partial: ByteBuffer?
    private var pendingLines: [String] = []
    private var ready = CircularBuffer<SMTPReply>()
    /// The group being waited for: how many replies, those read so far, its promise and timer.
    private var group: (count: Int, got: [SMTPReply], promise: EventLoopPromise<[SMTPReply]>, timer: Scheduled<Void>)?
    private(set) var terminalError: (any Error)?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var rest = partial {
            rest.writeBuffer(&bytes)
            bytes = rest
            partial = nil
        }
        while terminalError == nil {
            let next: (line: SMTPReplyLine, length: Int)? = bytes.withUnsafeReadableBytes { raw in
                guard let base = raw.baseAddress, let hit = memchr(base, 10, raw.count) else { return nil }
                let newline = base.distance(to: UnsafeRawPointer(hit))
                let end = newline > 0 && raw[newline - 1] == 13 ? newline - 1 : newline
                return (SMTPReplyLine(UnsafeRawBufferPointer(rebasing: raw[..<end])), newline + 1)
            }
            guard let next else { break }
            bytes.moveReaderIndex(forwardBy: next.length)
            received(next.line)
        }
        guard terminalError == nil, bytes.readableBytes > 0 else { return }
        if bytes.readableBytes > 8192 { fail(SMTPError.lineTooLong); return }
        partial = bytes
    }

    private func received(_ line: SMTPReplyLine) {
        guard let code = line.code, (200...599).contains(code) else {
            fail(SMTPError.malformedReply)
            return
        }
        pendingLines.append(line.text)
        if line.more { return }
        let reply = SMTPReply(code: code, lines: pendingLines)
        pendingLines = []
        guard var g = group else { ready.append(reply); return }
        group = nil // the array is appended to uniquely, not copied per reply
        g.got.append(reply)
        if g.got.count == g.count {
            g.timer.cancel()
            g.promise.succeed(g.got)
        } else {
            group = g
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(SMTPError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
    }

    /// The next `count` replies (a pipelined group) under one timer: replies already read are
    /// answered at once, the rest wait for the server; an error if they do not all arrive within
    /// `timeout` (which also ends the connection: once a reply is missed the conversation cannot be trusted).
    /// One reader at a time (the session is used by one task).
    func nextReplies(_ count: Int, on loop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<[SMTPReply]> {
        var got: [SMTPReply] = []
        got.reserveCapacity(count)
        while got.count < count, let reply = ready.popFirst() { got.append(reply) }
        if got.count == count { return loop.makeSucceededFuture(got) }
        // Replies that arrived before the connection ended still count (a relay that answers and hangs up).
        if let error = terminalError { return loop.makeFailedFuture(got.isEmpty ? error : SMTPPartialReplies(replies: got, error: error)) }
        precondition(group == nil, "one pipelined group at a time")
        let promise = loop.makePromise(of: [SMTPReply].self)
        let timer = loop.scheduleTask(in: timeout) { [weak self] () -> Void in self?.fail(SMTPError.timeout) }
        group = (count, got, promise, timer)
        return promise.futureResult
    }

    private func fail(_ error: any Error) {
        if terminalError == nil { terminalError = error }
        if let g = group {
            group = nil
            g.timer.cancel()
            g.promise.fail(g.got.isEmpty ? error : SMTPPartialReplies(replies: g.got, error: error))
        }
        context?.close(promise: nil)
    }
}

/// One TCP (optionally TLS) connection speaking SMTP lines.
final class SMTPConnection: Sendable {
    let channel: any Channel
    private let handler: SMTPReplyHandler

    private init(channel: any Channel, handler: SMTPReplyHandler) {
        self.channel = channel
        self.handler = handler
    }

    static func connect(host: String, port: Int, implicitTLS: NIOSSLContext?, serverHostname: String?,
                        connectTimeout: TimeAmount, group: any EventLoopGroup) async throws -> SMTPConnection {
        let handler = SMTPReplyHandler()
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let implicitTLS {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: implicitTLS, serverHostname: serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port).get()
        return SMTPConnection(channel: channel, handler: handler)
    }

    func reply(timeout: TimeAmount) async throws -> SMTPReply {
        try await replies(1, timeout: timeout)[0]
    }

    /// The next `count` replies (a pipelined group), in order, with one hop to the event loop.
    func replies(_ count: Int, timeout: TimeAmount) async throws -> [SMTPReply] {
        let handler = self.handler
        let loop = channel.eventLoop
        return try await loop.flatSubmit {
            handler.nextReplies(count, on: loop, timeout: timeout)
        }.get()
    }

    func write(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    }

    /// Writes without waiting for the write to complete: a failed write closes the connection, and
    /// the replies read next report that error (one suspension per round trip instead of two).
    func send(_ buffer: ByteBuffer) {
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// `first` then `buffer`, flushed together (one hop to the event loop, one `writev`): a message's
    /// data goes out as rendered, not copied into the envelope's buffer. An empty `buffer` is not written.
    func send(_ first: ByteBuffer, then buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return send(first) }
        let channel = self.channel
        let both: @Sendable () -> Void = {
            channel.write(first, promise: nil)
            channel.writeAndFlush(buffer, promise: nil)
        }
        if channel.eventLoop.inEventLoop { both() } else { channel.eventLoop.execute(both) }
    }

    func command(_ line: String, timeout: TimeAmount) async throws -> SMTPReply {
        do {
            try await write(line + "\r\n")
        } catch {
            // Report the root cause the handler saw (e.g. a failed TLS handshake), not "I/O on closed channel".
            throw await terminalError() ?? error
        }
        return try await reply(timeout: timeout)
    }

    private func terminalError() async -> (any Error)? {
        let handler = self.handler
        return try? await channel.eventLoop.submit { handler.terminalError }.get()
    }

    /// STARTTLS: TLS goes in front of the line decoder; the handshake runs with the next write.
    func startTLS(context: NIOSSLContext, serverHostname: String?) async throws {
        let channel = self.channel
        try await channel.eventLoop.flatSubmit {
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverHostname), position: .first)
            }
        }.get()
    }

    func close() async {
        try? await channel.close().get()
    }
}
