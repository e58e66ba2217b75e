import Foundation
import IPC
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SMTPCore

/// What all sessions of one receiver share: configuration, policy, committer, TLS context, the
/// session count, and the list of open sessions for a drain.
final class ReceiverService: @unchecked Sendable {
    /// Sent down every session's pipeline when the drain timeout is over.
    struct DrainEvent {}

    let config: MailerConfig
    let limits: SMTPLimits
    let policy: ReceiverPolicy
    let committer: MessageCommitter
    let tlsContext: NIOSSLContext?
    let reporter: StatusReporter
    let logger: Logger
    private let sessions = NIOLockedValueBox(0)
    let channels = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    init(config: MailerConfig, committer: MessageCommitter, rateLimiter: RateLimiter, tlsContext: NIOSSLContext?,
         reporter: StatusReporter, logger: Logger) {
        self.config = config
        var limits = SMTPLimits()
        limits.maxMessageSize = config.limits.maxMessageSize
        limits.maxRecipients = config.limits.maxRecipients
        limits.maxLineLength = config.limits.maxLineLength
        limits.maxErrors = config.limits.maxErrors
        self.limits = limits
        self.policy = ReceiverPolicy(credentials: config.credentials, hostname: config.hostname,
                                     rateLimiter: rateLimiter, reporter: reporter)
        self.committer = committer
        self.tlsContext = tlsContext
        self.reporter = reporter
        self.logger = logger
    }

    /// Counts a new session; false when `limits.maxConnections` are already open.
    func sessionOpened() -> Bool {
        let open = self.sessions.withLockedValue { count -> Int? in
            guard count < self.config.limits.maxConnections else { return nil }
            count += 1
            return count
        }
        if let open = open { self.reporter.gauge("mailer_smtp_sessions", "", Double(open)) }
        return open != nil
    }

    func sessionClosed() {
        let open = self.sessions.withLockedValue { count -> Int in
            count -= 1
            return count
        }
        self.reporter.gauge("mailer_smtp_sessions", "", Double(open))
    }

    static func makeTLSContext(_ tls: MailerConfig.TLS) throws -> NIOSSLContext? {
        guard !tls.certFile.isEmpty else { return nil }
        let chain = try NIOSSLCertificate.fromPEMFile(tls.certFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)
        return try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
    }
}

extension ReceiverService {
    /// Records a session's channel from the moment it is accepted (before it is active), so that a
    /// drain never exits under a connection the kernel already handed to this process.
    func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.channels.withLockedValue { $0[id] = channel }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLockedValue { _ = $0.removeValue(forKey: id) }
        }
    }
}
