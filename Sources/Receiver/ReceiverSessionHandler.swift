import Foundation
import IPC
import Logging
import NIOCore
import NIOSSL
import SMTPCore

/// Carries out what the session state machine decides, for one TCP connection: writes replies
/// (flushing once per pipelined group), hands finished messages to the committer, keeps (without
/// processing) what the client sends while a commit or an AUTH penalty is pending and stops reading
/// once `heldInputLimit` bytes are kept, and enforces the idle timeout.
final class ReceiverSessionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: ReceiverService
    private var machine: SMTPServerStateMachine?
    private var logger: Logger
    private var clientIP = "?"
    private var clientAddress = "?"
    private var counted = false
    /// Waiting for a commit or an AUTH penalty: input is kept, not processed.
    private var paused = false
    /// While paused, the socket is read until this many bytes are kept. Most clients send nothing
    /// before the reply, so a commit usually costs no change of the socket's read interest (two
    /// `epoll_ctl` calls per message); a pipelining client gets at most this much buffered.
    static let heldInputLimit = 64 * 1024
    /// Reading was turned off because of `heldInputLimit`.
    private var inputHeld = false
    /// The client does not read its replies (the outbound buffer passed its high-water mark): stop
    /// reading its commands until it does, so a pipelining flood cannot grow our memory.
    private var writeBlocked = false
    private var closing = false
    /// `process` is on the stack (a flush inside it can report writability synchronously).
    private var processing = false

    init(service: ReceiverService) {
        self.service = service
        self.logger = service.logger
    }

    func channelActive(context: ChannelHandlerContext) {
        let remote = context.channel.remoteAddress
        self.clientIP = remote?.ipAddress ?? "?"
        self.clientAddress = remote.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        self.logger[metadataKey: "client"] = "\(self.clientAddress)"
        let loopback = remote?.ipAddress.map { Loopback.contains(address: $0) } ?? false

        var refusal: SMTPReply?
        if self.service.config.security.allowLocalOnly && !loopback {
            refusal = SMTPReply(554, "5.7.1", "Connections are accepted from this host only")
            self.logger.warning("refused non-local connection")
            self.service.reporter.count("mailer_rejected_total", "reason=not_local")
        } else if !self.service.sessionOpened() {
            refusal = SMTPReply(421, "4.7.0", "Too many connections, try again later")
            self.logger.warning("refused connection: session limit reached")
            self.service.reporter.count("mailer_rejected_total", "reason=too_many_sessions")
        } else {
            self.counted = true
        }
        let config = self.service.config
        var sessionConfig = SMTPServerConfiguration(
            hostname: config.hostname, limits: self.service.limits, authAvailable: !config.credentials.isEmpty,
            authRequired: config.authRequired, plaintextAuthAllowed: loopback,
            startTLSAvailable: self.service.tlsContext != nil)
        sessionConfig.tlsActive = false
        var machine = SMTPServerStateMachine(configuration: sessionConfig, policy: self.service.policy)
        let action = machine.greeting(refusal: refusal)
        self.machine = machine
        self.perform(action, context: context)
        if refusal == nil { self.process(context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if self.counted {
            self.counted = false
            self.service.sessionClosed()
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = self.unwrapInboundIn(data)
        self.machine?.receive(&bytes)
        if !self.paused {
            self.process(context: context)
        } else if !self.inputHeld, (self.machine?.bufferedBytes ?? 0) >= Self.heldInputLimit {
            self.inputHeld = true
            self.updateReading(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read, !self.paused {
            self.logger.info("idle timeout")
            self.perform(.sendAndClose(.idleTimeout), context: context)
            return
        }
        if event as? ReceiverService.DrainEvent != nil {
            self.logger.info("closing session: drain timeout")
            self.perform(.sendAndClose(.shuttingDown), context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if self.writeBlocked && context.channel.isWritable {
            self.writeBlocked = false
            if !self.processing {
                self.updateReading(context: context)
                self.process(context: context)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("session error: \(error)")
        context.close(promise: nil)
    }

    // MARK: - Actions

    private func process(context: ChannelHandlerContext) {
        guard !self.processing else { return }
        self.processing = true
        defer { self.processing = false }
        while !self.paused && !self.writeBlocked && !self.closing, let action = self.machine?.next() {
            if case .needInput = action {
                context.flush()
                return
            }
            self.perform(action, context: context)
            if !self.closing && !context.channel.isWritable {
                self.writeBlocked = true
                context.flush()
                // The flush may have drained enough to make the channel writable again, and said so
                // (channelWritabilityChanged) before we got here: then carry on.
                if self.writeBlocked {
                    self.updateReading(context: context)
                    return
                }
            }
        }
    }

    private func perform(_ action: SMTPServerStateMachine.Action, context: ChannelHandlerContext) {
        switch action {
        case .send(let reply):
            self.write(reply, context: context)
        case .sendAndClose(let reply):
            self.closing = true
            self.write(reply, context: context)
            context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()), promise: nil)
            context.close(promise: nil)
        case .sendAfterPenalty(let reply, let failures):
            self.logger.warning("authentication failed", metadata: ["failures": "\(failures)"])
            self.service.reporter.count("mailer_auth_failures_total")
            self.pause(context: context)
            let delay = TimeAmount.milliseconds(Int64(min(failures, 5)) * 1000)
            context.eventLoop.scheduleTask(in: delay) {
                self.write(reply, context: context)
                self.resume(context: context)
            }
        case .store(let transaction, let body):
            self.pause(context: context)
            let machine = self.machine!
            let session = CommittedSession(
                client: self.clientAddress, clientIP: self.clientIP, helo: machine.heloName ?? "",
                esmtp: machine.esmtp, authenticatedUser: machine.authenticatedUser,
                tls: machine.configuration.tlsActive)
            self.service.committer.commit(transaction, body: body, session: session, logger: self.logger,
                                          on: context.eventLoop).whenComplete { result in
                let reply = self.machine!.stored(result.mapError { $0 as? SMTPReply ?? .localError })
                self.perform(reply, context: context)
                self.resume(context: context)
            }
        case .startTLS(let reply):
            self.write(reply, context: context)
            context.flush()
            guard let tls = self.service.tlsContext else { preconditionFailure("STARTTLS without a TLS context") }
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
                self.machine?.tlsStarted()
                self.logger.debug("TLS started")
            } catch {
                context.close(promise: nil)
            }
        case .needInput:
            context.flush()
        }
    }

    private func write(_ reply: SMTPReply, context: ChannelHandlerContext) {
        if let reason = ReceiverRejections.reason(for: reply) {
            self.service.reporter.count("mailer_rejected_total", "reason=\(reason)")
        }
        context.write(self.wrapOutboundOut(ByteBuffer(string: reply.wire)), promise: nil)
    }

    private func pause(context: ChannelHandlerContext) {
        context.flush()
        self.paused = true
    }

    private func resume(context: ChannelHandlerContext) {
        self.paused = false
        guard context.channel.isActive, !self.closing else { return }
        if self.inputHeld {
            self.inputHeld = false
            self.updateReading(context: context)
        }
        self.process(context: context)
    }

    /// Reads from the socket unless the client does not read its replies or sent too much while
    /// the session was paused.
    private func updateReading(context: ChannelHandlerContext) {
        let read = !self.inputHeld && !self.writeBlocked
        context.channel.setOption(ChannelOptions.autoRead, value: read).whenComplete { _ in }
    }
}

@available(*, unavailable)
extension ReceiverSessionHandler: Sendable {}

/// What the committer needs to know about the session a message came from.
struct CommittedSession {
    var client: String
    var clientIP: String
    var helo: String
    var esmtp: Bool
    var authenticatedUser: String?
    var tls: Bool
}
