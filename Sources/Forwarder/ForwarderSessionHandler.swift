import Foundation
import NIOCore
import NIOSSL
import SMTPCore

/// Carries out what `SMTPClientStateMachine` decides for one upstream connection: writes commands,
/// the message, puts TLS in place after `220` to STARTTLS, and arms a timer for every reply it
/// waits for. The connection's owner sees two futures: `ready` (the session is set up) and the
/// result of each transaction.
final class ForwarderSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    struct Timeouts: Sendable {
        /// Waiting for the greeting or the reply to a command (RFC 5321 §4.5.3.2 allows 5 minutes).
        var command: TimeAmount
        /// Waiting for the reply after the message (RFC 5321 §4.5.3.2.6: 10 minutes).
        var message: TimeAmount
    }

    private var machine: SMTPClientStateMachine
    private var parser = SMTPClientReplyParser()
    private let tlsContext: NIOSSLContext?
    private let serverHostname: String?
    private let timeouts: Timeouts
    private var readyPromise: EventLoopPromise<Void>?
    private var transactionPromise: EventLoopPromise<SMTPClientTransactionResult>?
    private var message: [UInt8] = []
    private var deadline: NIODeadline
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private var quitting = false
    /// Set once the session cannot be used any more.
    private(set) var broken = false
    let ready: EventLoopFuture<Void>

    init(eventLoop: any EventLoop, configuration: SMTPClientStateMachine.Configuration, tlsContext: NIOSSLContext?,
         serverHostname: String?, timeouts: Timeouts, deadline: NIODeadline) {
        self.machine = SMTPClientStateMachine(configuration: configuration)
        self.tlsContext = tlsContext
        self.serverHostname = serverHostname
        self.timeouts = timeouts
        self.deadline = deadline
        let promise = eventLoop.makePromise(of: Void.self)
        self.readyPromise = promise
        self.ready = promise.futureResult
    }

    /// True when a transaction may start (on the event loop).
    var isUsable: Bool { !self.broken && self.machine.isReady && self.transactionPromise == nil }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { self.armTimer(self.timeouts.command, waitingFor: "greeting") }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.fail(ForwarderAttemptError(.connectError, "connection closed"))
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.armTimer(self.timeouts.command, waitingFor: "greeting")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(ForwarderAttemptError(.connectError, "connection closed by the server", stale: self.isBetweenTransactions))
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        guard !self.broken else { return }
        self.parser.append(&bytes)
        do {
            while !self.broken, let reply = try self.parser.next() {
                self.timer?.cancel()
                self.timer = nil
                let stale = self.isBetweenTransactions
                let action = self.machine.receivedReply(reply)
                if case .fail(let error) = action {
                    var failure = ForwarderAttemptError(error)
                    failure.stale = stale
                    self.fail(failure)
                } else {
                    self.perform(action, context: context)
                }
            }
        } catch {
            self.fail(ForwarderAttemptError(.temporary, "protocol error: \(error)"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let ssl = error as? NIOSSLError, case .uncleanShutdown = ssl {
            self.fail(ForwarderAttemptError(.connectError, "connection closed by the server (no TLS close_notify)",
                                            stale: self.isBetweenTransactions))
        } else if error is NIOSSLError || error is NIOSSLExtraError || error is BoringSSLError {
            self.fail(ForwarderAttemptError(.tlsError, "TLS: \(error)"))
        } else {
            self.fail(ForwarderAttemptError(.connectError, "\(error)", stale: self.isBetweenTransactions))
        }
    }

    // MARK: - Requests from the owner (on the event loop)

    func begin(_ transaction: SMTPClientTransaction, message: [UInt8], deadline: NIODeadline)
        -> EventLoopFuture<SMTPClientTransactionResult>
    {
        guard let context = self.context else {
            preconditionFailure("begin(_:) on a handler that is not in a pipeline")
        }
        guard self.isUsable else {
            return context.eventLoop.makeFailedFuture(
                ForwarderAttemptError(.connectError, "connection no longer usable", stale: true))
        }
        let promise = context.eventLoop.makePromise(of: SMTPClientTransactionResult.self)
        self.transactionPromise = promise
        self.message = message
        self.deadline = deadline
        self.perform(self.machine.begin(transaction), context: context)
        return promise.futureResult
    }

    /// QUIT, then close when the reply comes (or after a short wait).
    func quit() {
        guard let context = self.context else { return }
        guard !self.broken, self.machine.isReady, !self.quitting else {
            context.close(promise: nil)
            return
        }
        self.quitting = true
        self.broken = true
        self.perform(self.machine.quit(), context: context)
        context.eventLoop.scheduleTask(in: .seconds(2)) { context.close(promise: nil) }
    }

    // MARK: - Actions

    private func perform(_ action: SMTPClientStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .send(let bytes):
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
            if !self.quitting { self.armTimer(self.timeouts.command, waitingFor: Self.verb(bytes)) }
        case .sendMessage:
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer(bytes: self.message)), promise: nil)
            self.message = []
            self.armTimer(self.timeouts.message, waitingFor: "end of message")
        case .startTLS:
            guard let tls = self.tlsContext else {
                self.fail(ForwarderAttemptError(.tlsError, "STARTTLS offered but no TLS context could be made"))
                return
            }
            // RFC 3207 §5: nothing received in plaintext after the 220 may be used.
            guard !self.parser.hasPartialInput else {
                self.fail(ForwarderAttemptError(.tlsError, "the server sent plaintext after 220 to STARTTLS"))
                return
            }
            do {
                let handler = try NIOSSLClientHandler(context: tls, serverHostname: self.serverHostname)
                try context.pipeline.syncOperations.addHandler(handler, position: .first)
                // The TLS handler holds what is written until the handshake is done, so EHLO goes out
                // encrypted or not at all; a failed handshake arrives in errorCaught.
                self.perform(self.machine.tlsStarted(), context: context)
            } catch {
                self.fail(ForwarderAttemptError(.tlsError, "cannot start TLS: \(error)"))
            }
        case .ready:
            if let promise = self.readyPromise {
                self.readyPromise = nil
                promise.succeed(())
            }
        case .finished(let result):
            if let promise = self.transactionPromise {
                self.transactionPromise = nil
                promise.succeed(result)
            }
        case .fail(let error):
            self.fail(ForwarderAttemptError(error))
        case .awaitReply:
            self.armTimer(self.timeouts.command, waitingFor: "reply")
        case .close:
            self.broken = true
            context.close(promise: nil)
        }
    }

    /// Fails whatever the owner waits for and closes the connection; later calls do nothing.
    private func fail(_ error: ForwarderAttemptError) {
        self.timer?.cancel()
        self.timer = nil
        let wasBroken = self.broken
        self.broken = true
        if let promise = self.readyPromise {
            self.readyPromise = nil
            promise.fail(error)
        }
        if let promise = self.transactionPromise {
            self.transactionPromise = nil
            promise.fail(error)
        }
        if !wasBroken { self.context?.close(promise: nil) }
    }

    /// A reused connection that breaks before the server took any part of the current transaction:
    /// the owner may try again on a fresh connection without risking a duplicate.
    private var isBetweenTransactions: Bool {
        self.machine.transactionsDone > 0 && (self.transactionPromise == nil || self.machine.isResetting)
    }

    private func armTimer(_ amount: TimeAmount, waitingFor what: String) {
        guard let context = self.context else { return }
        self.timer?.cancel()
        let at = min(NIODeadline.now() + amount, self.deadline)
        self.timer = context.eventLoop.scheduleTask(deadline: at) { [weak self] in
            guard let self = self else { return }
            self.timer = nil
            self.fail(ForwarderAttemptError(.timeout, "no answer to \(what) in time"))
        }
    }

    private static func verb(_ bytes: [UInt8]) -> String {
        let word = bytes.prefix { $0 != 0x20 && $0 != 0x0D }
        let text = String(decoding: word.prefix(10), as: UTF8.self)
        return text.allSatisfy({ $0.isLetter }) ? text : "AUTH"
    }
}

@available(*, unavailable)
extension ForwarderSessionHandler: Sendable {}
