import Foundation
import IPC
import Logging
import NIOCore
import NIOPosix
import SMTPCore

/// mailer-receiver — the SMTP server process.
///
/// **Summary.** Accepts SMTP sessions on the listening socket it inherits (fd 3), runs each through
/// `SMTPServerStateMachine`, and commits every accepted message to the spool before it answers 250.
///
/// **Reads.** The configuration (before dropping privileges); client connections on fd 3; the
/// control pipe (fd 5); the TLS key and certificate (before dropping privileges).
///
/// **Writes.** `queue/tmp/` then `queue/new/` (rename), nothing else in the spool; one byte on the
/// wake pipe (fd 7) after each commit; counters on the status pipe (fd 6).
///
/// **Privileges.** Runs as the `user` of the configuration (default `mailer`) when the supervisor is
/// root: setgroups, setresgid, setresuid, no-new-privs, before the first accept.
///
/// **Pipe messages.** In: `supervisorPing` (answered with `workerHeartbeat` from an event loop, so a
/// wedged loop stops the heartbeats), `supervisorDrain` (stop accepting, let sessions finish within
/// `drainTimeout`, exit 0). Out: `workerReady`, `workerHeartbeat`, counters and gauges.
///
/// **Signals.** SIGTERM/SIGINT: as `supervisorDrain`. EOF on the control pipe: exit.
///
/// **Security.** Talks to untrusted clients: every input goes through the state machine's limits
/// (line length, message size, recipients, errors, idle time, sessions). It holds no secrets but the
/// AUTH credentials.
///
/// **Known compromises.** Rate-limit counts live in memory and restart with the process.
public enum ReceiverWorker {
    public static func run(configPath: String?) throws -> Never {
        // Open what needs privilege before the drop: the TLS key may be readable by root only.
        let preloaded = try ConfigLoader.load(path: configPath).config
        let tlsContext = try ReceiverService.makeTLSContext(preloaded.tls)
        let context = try WorkerBootstrap.start(role: .receiver, configPath: configPath)
        let config = context.config
        let logger = context.logger

        let spool = Spool(dataDir: config.dataDir)
        let removed = spool.removeAbandonedTemporaryFiles()
        if removed > 0 { logger.info("removed \(removed) abandoned files from queue/tmp") }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        var wakeFD: Int32?
        if fcntl(InheritedFD.wake, F_GETFD) >= 0 {
            _ = fcntl(InheritedFD.wake, F_SETFL, fcntl(InheritedFD.wake, F_GETFL) | O_NONBLOCK)
            wakeFD = InheritedFD.wake
        }
        let rateLimiter = RateLimiter(limits: config.rateLimits)
        let committer = MessageCommitter(spool: spool, pool: pool, config: config, reporter: context.reporter,
                                         rateLimiter: rateLimiter, wakeFD: wakeFD)
        let service = ReceiverService(config: config, committer: committer, rateLimiter: rateLimiter,
                                      tlsContext: tlsContext, reporter: context.reporter, logger: logger)
        let idle = TimeAmount.seconds(Int64(config.limits.idleTimeout))
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: idle),
                        SessionTracker(service: service),
                        ReceiverSessionHandler(service: service),
                    ])
                }
            }
            .withBoundSocket(InheritedFD.smtpListener).wait()
        logger.info("receiver serving", metadata: ["listen": "\(server.localAddress.map { "\($0)" } ?? "?")"])

        let drain = Drainer(server: server, service: service, group: group, timeout: config.drainTimeout, logger: logger)
        WorkerBootstrap.listenToSupervisor(context) { message in
            switch message {
            case .supervisorPing:
                group.next().execute { context.status?.send(.workerHeartbeat(pid: getpid())) }
            case .supervisorDrain:
                drain.start(reason: "supervisor asked")
            default:
                logger.warning("unexpected pipe message \(message)")
            }
        }
        SignalTraps.onTerminate { drain.start(reason: "signal") }
        context.announceReady()
        try server.closeFuture.wait()
        drain.waitForSessions()
        exit(0)
    }
}

/// Stops a receiver gracefully: close the listener (the supervisor's copy keeps the port open), let
/// sessions finish for up to `timeout` seconds, then close what is left with a 421.
final class Drainer: @unchecked Sendable {
    private let server: any Channel
    private let service: ReceiverService
    private let group: MultiThreadedEventLoopGroup
    private let timeout: Int
    private let logger: Logger
    private let lock = NSLock()
    private var started = false

    init(server: any Channel, service: ReceiverService, group: MultiThreadedEventLoopGroup, timeout: Int, logger: Logger) {
        self.server = server
        self.service = service
        self.group = group
        self.timeout = timeout
        self.logger = logger
    }

    func start(reason: String) {
        self.lock.lock()
        defer { self.lock.unlock() }
        guard !self.started else { return }
        self.started = true
        self.logger.info("draining (\(reason)): no new sessions")
        self.server.close(promise: nil)
    }

    /// Blocks until every session ended or the timeout passed (then closes the rest).
    func waitForSessions() {
        let deadline = Date().addingTimeInterval(Double(self.timeout))
        while Date() < deadline {
            if self.service.channels.withLockedValue({ $0.isEmpty }) { return }
            usleep(50_000)
        }
        let left = self.service.channels.withLockedValue { Array($0.values) }
        self.logger.warning("drain timeout: closing \(left.count) sessions")
        for channel in left { channel.pipeline.fireUserInboundEventTriggered(ReceiverService.DrainEvent()) }
        usleep(200_000)
    }
}
