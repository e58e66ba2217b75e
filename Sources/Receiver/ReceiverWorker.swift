import Foundation
import IPC
import Logging
import NIOCore
import NIOPosix
import NIOSSL
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
/// wedged loop stops the heartbeats), `supervisorServe` (start accepting, when started in standby by a
/// reload), `supervisorDrain` (stop accepting, say `workerStoppedAccepting`, let sessions finish
/// within `drainTimeout`, exit 0). Out: `workerReady`, `workerHeartbeat`, `workerStoppedAccepting`,
/// counters and gauges.
///
/// **Signals.** SIGTERM/SIGINT: as `supervisorDrain`. EOF on the control pipe: exit.
///
/// **Threads.** `eventLoopThreads` event loops run the sessions; 16 commit threads write, flush and
/// rename spool files (each blocks in `fdatasync`). The commit threads (and the control pipe's
/// reader) run under `SCHED_BATCH`: waking from a flush, a commit thread does not preempt a loop.
///
/// **Security.** Talks to untrusted clients: every input goes through the state machine's limits
/// (line length, message size, recipients, errors, idle time, sessions). It holds no secrets but the
/// AUTH credentials.
///
/// **Known compromises.** Rate-limit counts live in memory and restart with the process.
public enum ReceiverWorker {
    /// Loads what the receiver will load at its start (the TLS certificate and key), so that a
    /// configuration naming files that do not load is refused by `check-config`, `serve` and a
    /// reload instead of making receivers fail. Throws a `ConfigError` naming the key.
    public static func checkFiles(_ config: MailerConfig) throws {
        let tls = config.tls
        guard !tls.certFile.isEmpty else { return }
        do {
            _ = try NIOSSLCertificate.fromPEMFile(tls.certFile)
        } catch {
            throw ConfigError(key: "tls.certFile", message: "cannot load a certificate from \(tls.certFile): \(error)")
        }
        do {
            _ = try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)
        } catch {
            throw ConfigError(key: "tls.keyFile", message: "cannot load a private key from \(tls.keyFile): \(error)")
        }
        do {
            _ = try ReceiverService.makeTLSContext(tls)
        } catch {
            throw ConfigError(key: "tls", message: "the certificate and key do not make a TLS server: \(error)")
        }
    }

    /// One event loop per two cores. A loop only parses commands and hands messages to the commit
    /// threads; the kernel's TCP and file system work, the forwarder and the applications that send
    /// through this host need the other cores. On 2 cores one loop took a tenth less CPU per message
    /// than two, with fewer context switches (bench/README.md, change 13).
    static var eventLoopThreads: Int { max(1, System.coreCount / 2) }

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

        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.eventLoopThreads)
        // Threads this thread starts from here on, the commit threads first, run under SCHED_BATCH:
        // one that wakes from a flush waits for the event loop's time slice instead of preempting
        // it, and every session waits for the event loop (bench/README.md, change 14). The loops
        // were started above and keep the normal policy.
        CurrentProcess.scheduleAsBatch()
        let pool = NIOThreadPool(numberOfThreads: 16)
        pool.start()
        var wakeFD: Int32?
        if fcntl(InheritedFD.wake, F_GETFD) >= 0 {
            _ = fcntl(InheritedFD.wake, F_SETFL, fcntl(InheritedFD.wake, F_GETFL) | O_NONBLOCK)
            wakeFD = InheritedFD.wake
        }
        let rateLimiter = RateLimiter(limits: config.rateLimits)
        let committer = MessageCommitter(spool: spool, pool: pool, config: config, reporter: context.reporter,
                                         wakeFD: wakeFD)
        let service = ReceiverService(config: config, committer: committer, rateLimiter: rateLimiter,
                                      tlsContext: tlsContext, reporter: context.reporter, logger: logger)
        let idle = TimeAmount.seconds(Int64(config.limits.idleTimeout))
        let server = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.autoRead, value: !context.standby)
            .childChannelInitializer { channel in
                service.track(channel)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(readTimeout: idle),
                        ReceiverSessionHandler(service: service),
                    ])
                }
            }
            .withBoundSocket(InheritedFD.smtpListener).wait()
        logger.info(context.standby ? "receiver ready, accepting once the running generation stops" : "receiver serving",
                    metadata: ["listen": "\(server.localAddress.map { "\($0)" } ?? "?")"])

        let drain = Drainer(server: server, service: service, group: group, timeout: config.drainTimeout, logger: logger)
        WorkerBootstrap.listenToSupervisor(context) { message in
            switch message {
            case .supervisorPing:
                group.next().execute { context.status?.send(.workerHeartbeat(pid: getpid())) }
            case .supervisorServe:
                server.setOption(ChannelOptions.autoRead, value: true).whenSuccess { logger.info("receiver serving") }
            case .supervisorDrain:
                drain.start(reason: "supervisor asked")
            default:
                logger.warning("unexpected pipe message \(message)")
            }
        }
        SignalTraps.onTerminate { drain.start(reason: "signal") }
        context.announceReady()
        drain.waitUntilStarted()
        context.status?.send(.workerStoppedAccepting(pid: getpid()))
        drain.waitForSessions()
        exit(0)
    }
}

/// Stops a receiver gracefully: stop accepting, let sessions finish for up to `timeout` seconds,
/// then close what is left with a 421.
///
/// The listener is not closed but stops being read (autoRead off): closing a NIO server channel
/// drops connections it has accepted in the same read but not yet set up, while a listener that is
/// merely not read leaves every pending connection in the kernel's queue, which the listening
/// socket shares with the next generation's receiver.
final class Drainer: @unchecked Sendable {
    private let server: any Channel
    private let service: ReceiverService
    private let group: MultiThreadedEventLoopGroup
    private let timeout: Int
    private let logger: Logger
    private let lock = NSLock()
    private var started = false
    private let startedSignal = DispatchSemaphore(value: 0)

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
        self.server.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
            self.startedSignal.signal()
        }
    }

    /// Blocks until a drain was asked for and the listener is no longer read.
    func waitUntilStarted() {
        self.startedSignal.wait()
    }

    /// Blocks until every session ended or the timeout passed (then closes the rest). Connections
    /// accepted just before the listener closed are still being set up on their event loops: the
    /// list must stay empty for a moment before the process may go.
    func waitForSessions() {
        let deadline = Date().addingTimeInterval(Double(self.timeout))
        var emptySince: Date?
        while Date() < deadline {
            if self.service.channels.withLockedValue({ $0.isEmpty }) {
                if let since = emptySince, Date().timeIntervalSince(since) >= 0.2 { return }
                emptySince = emptySince ?? Date()
            } else {
                emptySince = nil
            }
            usleep(20_000)
        }
        let left = self.service.channels.withLockedValue { Array($0.values) }
        self.logger.warning("drain timeout: closing \(left.count) sessions")
        for channel in left { channel.pipeline.fireUserInboundEventTriggered(ReceiverService.DrainEvent()) }
        usleep(200_000)
    }
}
