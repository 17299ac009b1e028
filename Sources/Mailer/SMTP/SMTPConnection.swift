import NIOCore
import NIOPosix
import NIOSSL

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

/// Splits the server's byte stream into lines (CRLF or LF), bounded so a broken server
/// cannot make us buffer without limit.
struct SMTPLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReplyLine

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 8192 { throw SMTPError.lineTooLong }
            return .needMoreData
        }
        var end = newline
        if end > view.startIndex, view[end - 1] == UInt8(ascii: "\r") { end -= 1 }
        let line = SMTPReplyLine(view[view.startIndex..<end])
        buffer.moveReaderIndex(to: newline + 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// One reply line, parsed from its bytes: `code` (nil: not a reply line), continuation or last, text.
struct SMTPReplyLine {
    let code: Int?
    let more: Bool
    let text: String

    init(_ bytes: ByteBufferView) {
        var digits = bytes.prefix(3).makeIterator()
        var value = 0, count = 0
        while let d = digits.next(), d >= 48, d <= 57 { value = value * 10 + Int(d - 48); count += 1 }
        code = count == 3 && (bytes.count == 3 || bytes[bytes.startIndex + 3] == 32 || bytes[bytes.startIndex + 3] == 45)
            ? value : nil
        more = bytes.count > 3 && bytes[bytes.startIndex + 3] == UInt8(ascii: "-")
        text = bytes.count > 4 ? String(decoding: bytes[(bytes.startIndex + 4)...], as: UTF8.self) : ""
    }
}

/// Assembles (multi-line) replies and hands them out in order. Lives on the channel's event loop;
/// every method is called there.
final class SMTPReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = SMTPReplyLine

    private var pendingLines: [String] = []
    private var ready = CircularBuffer<SMTPReply>()
    private var waiters = CircularBuffer<EventLoopPromise<SMTPReply>>()
    private(set) var terminalError: (any Error)?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard let code = line.code, (200...599).contains(code) else {
            fail(SMTPError.malformedReply)
            return
        }
        pendingLines.append(line.text)
        if line.more { return }
        let reply = SMTPReply(code: code, lines: pendingLines)
        pendingLines = []
        if let waiter = waiters.popFirst() { waiter.succeed(reply) } else { ready.append(reply) }
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
    func nextReplies(_ count: Int, on loop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<[SMTPReply]> {
        var got: [SMTPReply] = []
        while got.count < count, let reply = ready.popFirst() { got.append(reply) }
        if got.count == count { return loop.makeSucceededFuture(got) }
        if let error = terminalError { return loop.makeFailedFuture(error) }
        let waiting = (got.count..<count).map { _ in
            let promise = loop.makePromise(of: SMTPReply.self)
            waiters.append(promise)
            return promise.futureResult
        }
        let timer = loop.scheduleTask(in: timeout) { [weak self] in self?.fail(SMTPError.timeout) }
        let rest = waiting.count == 1 ? waiting[0].map { [$0] } : EventLoopFuture.whenAllSucceed(waiting, on: loop)
        rest.whenComplete { _ in timer.cancel() }
        return rest.map { got + $0 }
    }

    private func fail(_ error: any Error) {
        if terminalError == nil { terminalError = error }
        while let waiter = waiters.popFirst() { waiter.fail(error) }
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
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPLineDecoder()))
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
