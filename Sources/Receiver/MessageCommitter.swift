import Foundation
import IPC
import Logging
import NIOCore
import NIOPosix
import SMTPCore

/// Turns a finished transaction into a spool file: picks the queue id, stamps the trace headers,
/// writes and fsyncs on the thread pool (never on an event loop), then wakes the forwarder and
/// counts. The reply comes back as the future's value: the queue id, or the 4xx to send.
final class MessageCommitter: Sendable {
    private let spool: Spool
    private let pool: NIOThreadPool
    private let config: MailerConfig
    private let reporter: StatusReporter
    private let wakeFD: Int32?

    init(spool: Spool, pool: NIOThreadPool, config: MailerConfig, reporter: StatusReporter, wakeFD: Int32?) {
        self.spool = spool
        self.pool = pool
        self.config = config
        self.reporter = reporter
        self.wakeFD = wakeFD
    }

    func commit(_ transaction: SMTPTransaction, body: ByteBuffer, session: CommittedSession, logger: Logger,
                on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let id = QueueID.make()
        let now = Date()
        var proto = transaction.smtputf8 ? "UTF8SMTP" : (session.esmtp ? "ESMTP" : "SMTP")
        if session.tls { proto += "S" }
        if session.authenticatedUser != nil { proto += "A" }
        let summary = HeaderSummary(body)
        let trace = TraceHeaders(
            queueID: id, hostname: self.config.hostname, heloName: session.helo, clientIP: session.clientIP,
            protocolName: proto, recipients: transaction.recipients, date: now
        ).render(for: summary)
        var envelope = Envelope(
            id: id, sender: transaction.sender, recipients: transaction.recipients, receivedAt: now.timeIntervalSince1970,
            client: session.client, helo: session.helo, authIdentity: session.authenticatedUser,
            smtputf8: transaction.smtputf8, eightBit: transaction.eightBit)
        envelope.size = trace.readableBytes + body.readableBytes
        let spool = self.spool
        let started = DispatchTime.now()
        return self.pool.runIfActive(eventLoop: eventLoop) {
            try spool.enqueue(envelope, parts: [trace, body])
        }.flatMapErrorThrowing { error in
            let spoolError = error as? SpoolError
            logger.error("cannot store message: \(error)", metadata: ["id": "\(id)"])
            self.reporter.count("mailer_rejected_total", spoolError?.isNoSpace == true ? "reason=disk_full" : "reason=io_error")
            throw spoolError?.isNoSpace == true ? SMTPReply.insufficientStorage : SMTPReply.localError
        }.map {
            self.wake()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            self.reporter.count("mailer_accepted_total")
            self.reporter.count("mailer_accepted_recipients_total", by: transaction.recipients.count)
            self.reporter.observe("mailer_commit_seconds", "", seconds)
            if self.config.security.logAllEmails {
                logger.info("accepted message", metadata: [
                    "id": "\(id)", "from": "<\(transaction.sender)>",
                    "to": "\(Self.summarize(transaction.recipients))", "size": "\(envelope.size)",
                    "subject": "\(summary.subject ?? "")",
                ])
            } else {
                logger.info("accepted message", metadata: ["id": "\(id)"])
            }
            return id
        }
    }

    /// One byte on the wake pipe: a hint, so a full pipe or a missing forwarder is fine.
    private func wake() {
        guard let fd = self.wakeFD else { return }
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
    }

    static func summarize(_ recipients: [String]) -> String {
        let shown = recipients.prefix(3).map { "<\($0)>" }.joined(separator: ",")
        return recipients.count > 3 ? "\(shown),+\(recipients.count - 3) more" : shown
    }
}
