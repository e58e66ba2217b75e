import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Turns HTTP/1 request parts into a `MonitorRequest`, lets the router answer it on the thread pool
/// (answers read the spool and may fsync), and writes the response.
///
/// NIO's `HTTPServerPipelineHandler` in front of it delivers one request at a time and holds back
/// pipelined ones until the answer is written, so a client cannot pile up work. Bodies above
/// `MonitorRouter.maximumBodySize` are not buffered: the answer is 413 and the connection closes.
final class MonitorHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: MonitorRouter
    private let pool: NIOThreadPool
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var bodyTooLarge = false
    /// A request is being answered on the pool: the idle timeout does not apply (an admin action on
    /// a large spool may take longer than it, and its client must still get the answer).
    private var answering = false

    init(router: MonitorRouter, pool: NIOThreadPool) {
        self.router = router
        self.pool = pool
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body = []
            self.bodyTooLarge = false
        case .body(let buffer):
            if self.body.count + buffer.readableBytes > MonitorRouter.maximumBodySize {
                self.bodyTooLarge = true
                self.body = []
            } else if !self.bodyTooLarge {
                self.body += buffer.readableBytesView
            }
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            if self.bodyTooLarge {
                let response = MonitorResponse.error(.payloadTooLarge, "the request body is too large")
                self.write(response, for: head, keepAlive: false, context: context)
                return
            }
            let request = MonitorRequest(method: head.method, uri: head.uri, headers: head.headers,
                                         clientAddress: context.channel.remoteAddress?.ipAddress, body: self.body)
            self.body = []
            let router = self.router
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.answering = true
            self.pool.runIfActive(eventLoop: context.eventLoop) { router.respond(to: request) }
                .whenComplete { result in
                    let (handler, context) = bound.value
                    handler.answering = false
                    let response: MonitorResponse
                    switch result {
                    case .success(let answer): response = answer
                    case .failure: response = .error(.serviceUnavailable, "the monitor is stopping")
                    }
                    handler.write(response, for: head, keepAlive: head.isKeepAlive, context: context)
                }
        }
    }

    private func write(_ response: MonitorResponse, for request: HTTPRequestHead, keepAlive: Bool,
                       context: ChannelHandlerContext) {
        var headers = HTTPHeaders(response.headers)
        let bytes = Array(response.body.utf8)
        headers.replaceOrAdd(name: "Content-Length", value: String(bytes.count))
        headers.replaceOrAdd(name: "Cache-Control", value: "no-store")
        headers.replaceOrAdd(name: "X-Content-Type-Options", value: "nosniff")
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        if request.method != .HEAD && !bytes.isEmpty {
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !self.answering { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension MonitorHTTPHandler: Sendable {}
