import Foundation
import IPC
import Logging
import NIOCore
import NIOPosix
import SMTPCore

/// mailer-forwarder — the delivery process.
///
/// **Summary.** Takes committed messages out of the spool and delivers them: to the upstream
/// providers of `forwardProviders` (ascending `priority`, then file order; the legacy `forwardHost`
/// keys are one more provider) with failover, or, in local mode (`forwardSMTP` false and no direct
/// delivery), as `local/<ID>.eml` files. Woken by a byte on the wake pipe after each commit, and
/// rescanning the spool at start and every `queue.scanInterval` seconds, so a lost wake-up delays a
/// message by seconds and never loses it. `workerCount` deliveries run at once; a message's
/// recipients go in transactions of `batchSize`, `batchDelay` ms apart.
///
/// **Reads.** The configuration (before dropping privileges); `queue/new/`, due files in
/// `queue/deferred/`, unlocked leftovers in `queue/active/`; the providers' CA files (`caFile`).
///
/// **Writes.** Renames within the spool only: `new/`|`deferred/`|`active/` → `active/` (claim, under
/// an exclusive flock held until the outcome is recorded) → gone (delivered), `deferred/` (retry;
/// the mtime is the next attempt, backoff from `queue.retryInitialDelay` doubling up to
/// `queue.retryMaxDelay`) or `failed/` (a recipient refused with 5xx, or older than
/// `queue.maxQueueLifetime`; the envelope keeps each recipient's last reply and the attempt
/// history). Local mode writes `local/`. Counters, gauges and histograms on the status pipe (fd 6).
///
/// **Talks to.** The upstream providers over SMTP: EHLO (HELO if EHLO gets a 5xx), STARTTLS whenever
/// offered, verified against the system trust store (or the provider's `caFile`) — a failed
/// verification is an error for that provider, never a fall-back to plaintext; implicit TLS when
/// `ssl` is true; AUTH PLAIN or LOGIN only over TLS or to loopback; PIPELINING, SIZE, 8BITMIME,
/// SMTPUTF8. Sessions are reused across messages (RSET) and closed after 30 s idle.
///
/// **Privileges.** Runs as the `user` of the configuration (default `mailer`) when the supervisor is
/// root: setgroups, setresgid, setresuid, no-new-privs, before it opens the spool. All its threads
/// run under `SCHED_BATCH`: a delivery that wakes up does not preempt a receiver answering a client.
///
/// **Pipe messages.** In (fd 5): `supervisorPing` (answered with `workerHeartbeat` from an event
/// loop), `supervisorDrain` (stop claiming, finish the deliveries in flight, exit 0),
/// `supervisorPause` / `supervisorResume` (stop or resume starting deliveries; acceptance by the
/// receivers is not affected; started with `MAILER_PAUSED=1` while paused, it starts paused). In (fd 7): wake-up bytes, a hint shared by every forwarder
/// generation. Out (fd 6): `workerReady`, `workerHeartbeat`, and the metrics
/// `mailer_delivered_total{provider}`, `mailer_delivered_recipients_total{provider}`,
/// `mailer_deferred_total`, `mailer_failed_total`, `mailer_failed_recipients_total`,
/// `mailer_delivery_attempts_total{outcome,provider}` (outcome: success, temporary, permanent,
/// connect_error, tls_error, auth_error, timeout), `mailer_delivery_seconds{provider}`,
/// `mailer_deliveries_in_flight`, `mailer_provider_circuit_open{provider}`.
///
/// **Signals.** SIGTERM/SIGINT: as `supervisorDrain`. EOF on the control pipe: exit at once (the
/// messages in flight stay in `active/`, unlocked, and are claimed again).
///
/// **Threads.** The scanner (the main thread), `workerCount` delivery threads, and
/// `eventLoopThreads` event loops for the upstream sessions.
///
/// **Security.** Holds the providers' passwords (never logged; `maskSecret` when shown) and reads
/// every message. It talks only to the configured providers; their replies are limited in line
/// length and count, and a reply out of step ends the connection.
///
/// **Limits.** `processingTimeout` bounds one attempt with one provider (connection and
/// transaction); a command waits at most 5 minutes for its reply, the end of the message 10.
///
/// **Diagnostics.** A misbehaving upstream: a log line per attempt (queue ID, provider, recipients,
/// reply, duration) and failover. A spool error: logged, the message stays in `active/` and is
/// claimed again. A bug: `preconditionFailure`, the supervisor restarts the process.
///
/// **Known compromises.** At-least-once: a kill -9 between an upstream's 250 and the spool update
/// sends that message again. The circuit breaker lives in memory and starts closed after a restart.
/// An 8-bit message goes as it is to a server without 8BITMIME. Direct MX delivery and DKIM are not
/// implemented yet: they slot in as a `ForwarderRoute` and a `ForwarderMessageTransform`.
///
/// **See also.** mailer-receiver(8), mailer(8), `Spool` for the spool states.
public enum ForwarderWorker {
    /// Seconds an unused upstream session is kept open.
    static let idleConnectionTimeout: TimeInterval = 30

    /// One event loop per two cores, at most two: the loops only move bytes between the delivery
    /// threads and the upstream sessions (bench/README.md, change 13).
    static var eventLoopThreads: Int { max(1, min(2, System.coreCount / 2)) }

    public static func run(configPath: String?) throws -> Never {
        // Before any thread starts, so that all inherit it: a delivery thread (or this process's
        // event loop) that wakes does not preempt a receiver answering its client. Forwarding can
        // wait for the running thread's time slice (bench/README.md, change 9).
        CurrentProcess.scheduleAsBatch()
        let context = try WorkerBootstrap.start(role: .forwarder, configPath: configPath)
        let config = context.config
        let logger = context.logger
        let reporter = context.reporter
        signal(SIGPIPE, SIG_IGN)

        let spool = Spool(dataDir: config.dataDir)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: self.eventLoopThreads)
        let breaker = ForwarderCircuitBreaker(
            threshold: config.circuitBreaker.failureThreshold, cooldown: Double(config.circuitBreaker.cooldown)
        ) { name, open in
            reporter.gauge("mailer_provider_circuit_open", "provider=\(name)", open ? 1 : 0)
            if open {
                logger.warning("circuit open: provider skipped for \(config.circuitBreaker.cooldown) s",
                               metadata: ["provider": "\(name)"])
            } else {
                logger.info("circuit closed: provider answers again", metadata: ["provider": "\(name)"])
            }
        }
        let mode: ForwarderDelivery.Mode
        var pool: ForwarderConnectionPool?
        if config.localMode {
            mode = .local
            logger.info("local mode: messages are stored in \(spool.localDirectory)")
        } else {
            let route = ForwarderProviderRoute(config: config)
            let connections = ForwarderConnectionPool(idleTimeout: self.idleConnectionTimeout,
                                                      maxIdlePerHop: config.workerCount)
            pool = connections
            let attempt = TimeAmount.seconds(Int64(config.processingTimeout))
            let settings = ForwarderConnection.Settings(
                heloName: config.directDelivery.ehloDomain.isEmpty ? config.hostname : config.directDelivery.ehloDomain,
                connectTimeout: min(.seconds(30), attempt),
                timeouts: .init(command: .minutes(5), message: .minutes(10)))
            let transport = ForwarderSMTPTransport(group: group, pool: connections, settings: settings,
                                                   attemptTimeout: attempt)
            mode = .route(route, transport)
            for hop in route.hops {
                reporter.gauge("mailer_provider_circuit_open", "provider=\(hop.name)", 0)
                logger.info("provider", metadata: [
                    "provider": "\(hop.name)", "host": "\(hop.host):\(hop.port)", "tls": "\(hop.implicitTLS ? "implicit" : "starttls-if-offered")",
                    "verify": "\(hop.verification)", "user": "\(hop.username)", "password": "\(maskSecret(hop.password))",
                ])
            }
            if route.hops.isEmpty {
                logger.warning("direct delivery is not implemented yet and no provider is configured: messages wait in the queue")
            }
        }
        let delivery = ForwarderDelivery(
            spool: spool, mode: mode, breaker: breaker, policy: ForwarderRetryPolicy(config.queue),
            batchSize: config.batchSize, batchDelay: config.batchDelay, reporter: reporter, logger: logger)

        var wakeFD: Int32?
        if fcntl(InheritedFD.wake, F_GETFD) >= 0 {
            _ = fcntl(InheritedFD.wake, F_SETFL, fcntl(InheritedFD.wake, F_GETFL) | O_NONBLOCK)
            wakeFD = InheritedFD.wake
        }
        let scheduler = ForwarderScheduler(
            spool: spool, delivery: delivery, pool: pool, workerCount: config.workerCount,
            scanInterval: Double(config.queue.scanInterval), wakeFD: wakeFD, logger: logger, reporter: reporter)

        WorkerBootstrap.listenToSupervisor(context) { message in
            switch message {
            case .supervisorPing:
                group.next().execute { context.status?.send(.workerHeartbeat(pid: getpid())) }
            case .supervisorDrain:
                scheduler.drain(reason: "supervisor asked")
            case .supervisorPause:
                scheduler.pause()
            case .supervisorResume:
                scheduler.resume()
            default:
                logger.warning("unexpected pipe message \(message)")
            }
        }
        SignalTraps.onTerminate { scheduler.drain(reason: "signal") }
        if context.paused { scheduler.pause() }
        reporter.gauge("mailer_deliveries_in_flight", "", 0)
        context.announceReady()
        logger.info("forwarder serving", metadata: [
            "mode": "\(config.localMode ? "local" : "providers")", "workers": "\(config.workerCount)",
            "batch": "\(config.batchSize)",
        ])
        scheduler.run()
    }
}
