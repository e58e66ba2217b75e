import Foundation
import IPC
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// mailer-monitor — the loopback HTTP API: health, metrics and administration.
///
/// **Summary.** Serves HTTP/1.1 on the listening socket it inherits (fd 4, bound by the supervisor to
/// `127.0.0.1:healthCheckPort`): `GET /health` (the original's JSON; `ok`, `degraded`, or `error`
/// answered 503), `GET /metrics` (Prometheus text 0.0.4, or the original's JSON with
/// `Accept: application/json` or `?format=json`), and the admin API — `POST /admin/retry-failed`,
/// `/admin/clean-queue`, `/admin/clean-old-emails`, `/admin/service` (`{"action":"pause"|"resume"}`),
/// `GET /admin/config`, `/admin/queue`, `/admin/queue/{id}`. Routing and every answer live in
/// `MonitorRouter`, which knows nothing of sockets. Not started at all with `enableHealthCheck: false`.
///
/// **Reads.** The configuration (before dropping privileges); the latest `MonitorSnapshot` the
/// supervisor sends each second on the control pipe (fd 5) — the workers' counters, gauges and
/// histograms and the worker table; the spool's directories and envelopes; free space (statvfs).
///
/// **Writes.** Only on an admin request: renames failed/ → queue/new/ (retry-failed), unlinks in
/// queue/new, deferred, hold (clean-queue) and in failed/ and local/ (clean-old-emails). A probe file
/// `queue/tmp/monitor-probe.<pid>`, created and removed for each health check. One byte on the wake
/// pipe (fd 7) after a retry. `monitorAdmin` on the status pipe (fd 6).
///
/// **Talks to.** HTTP clients on loopback only (curl health checks, Prometheus, operators); the
/// supervisor over its pipes. Never to the forwarders or receivers directly: pause/resume goes
/// through the supervisor, which remembers it for forwarders started later.
///
/// **Privileges.** Runs as the `user` of the configuration (default `mailer`) when the supervisor is
/// root, dropped in `WorkerBootstrap` before the first accept. Needs read/write on the data
/// directory, as the receiver and forwarder do.
///
/// **Pipe messages.** In: `supervisorPing` (answered with `workerHeartbeat` from the event loop, so a
/// wedged loop stops the heartbeats), `supervisorSnapshot(json:)` (kept as the latest),
/// `supervisorServe` (start accepting, when started in standby by a reload), `supervisorDrain` (stop
/// accepting, say `workerStoppedAccepting`, finish the requests in progress, exit 0). Out:
/// `workerReady`, `workerHeartbeat`, `workerStoppedAccepting`, `monitorAdmin(action: "pause" | "resume")`.
///
/// **Signals.** SIGTERM/SIGINT: as `supervisorDrain`. EOF on the control pipe: exit.
///
/// **Security.** Moderately sensitive: it can delete and re-queue mail. Every request must come from
/// a loopback address (403 otherwise, whatever the path). Admin requests that look like they come
/// from a web page — a foreign `Host` (DNS rebinding), an `Origin`, `Sec-Fetch-Site: cross-site` — are
/// refused (403), so a browser on this host cannot be turned against the API; when `adminToken` is
/// set, admin requests need `Authorization: Bearer <token>` (401). `/admin/config` shows no
/// password or token. Queue ids from a client are checked with `QueueID.isValid` before they become
/// paths. Request bodies are capped at 64 KiB; idle connections close after 30 s. Every admin action
/// is logged with the client's address.
///
/// **Limits.** One event loop and two threads for answers; `/admin/queue` reads at most `limit`
/// envelopes (1000 by default).
///
/// **Known compromises.** The counters live in the supervisor's memory: they start from zero when
/// the supervisor restarts (Prometheus handles counter resets). `total_emails_processed` and
/// `total_emails` count accepted messages; `success_rate` is delivered ÷ (delivered + failed)
/// messages, 100 when none finished yet; `avg_processing_time_ms` is the mean of
/// `mailer_delivery_seconds` (every delivery attempt, failed ones included). The age of the oldest queued message is read from the
/// envelopes of the 16 oldest ids only. `clean-queue` leaves `active/` alone (a forwarder holds those).
///
/// **See also.** `MonitorRouter`, `MonitorHealth` (the status rule and its thresholds),
/// `MonitorPrometheus`, `Supervisor` (what the snapshot holds).
public enum MonitorWorker {
    /// Connections with nothing to read for this long are closed.
    static let idleTimeout = TimeAmount.seconds(30)

    public static func run(configPath: String?) throws -> Never {
        let context = try WorkerBootstrap.start(role: .monitor, configPath: configPath)
        let config = context.config
        let logger = context.logger
        let spool = Spool(dataDir: config.dataDir)
        let snapshots = MonitorSnapshotStore()

        let wakeFD: Int32? = fcntl(InheritedFD.wake, F_GETFD) >= 0 ? InheritedFD.wake : nil
        if let fd = wakeFD { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let actions = MonitorActions(
            relay: { action in context.status?.send(.monitorAdmin(action: action)) ?? false },
            wakeForwarders: {
                // A hint only: a full pipe already holds a wake-up, and the forwarder rescans anyway.
                guard let fd = wakeFD else { return }
                var byte: UInt8 = 0x01
                _ = write(fd, &byte, 1)
            })
        let router = MonitorRouter(config: config, spool: spool, snapshots: snapshots, actions: actions,
                                   logger: logger)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.autoRead, value: !context.standby)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(readTimeout: Self.idleTimeout))
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(MonitorHTTPHandler(router: router, pool: pool))
                }
            }
        let server: any Channel
        if fcntl(InheritedFD.httpListener, F_GETFD) >= 0 {
            server = try bootstrap.withBoundSocket(InheritedFD.httpListener).wait()
        } else {
            // Started by hand, without a supervisor: bind the port ourselves, loopback only.
            server = try bootstrap.bind(host: "127.0.0.1", port: config.healthCheckPort).wait()
        }
        logger.info("monitor serving", metadata: ["listen": "\(server.localAddress.map { "\($0)" } ?? "?")"])

        let stop: @Sendable (String) -> Void = { reason in
            logger.info("monitor stopping (\(reason))")
            server.close().whenComplete { _ in context.status?.send(.workerStoppedAccepting(pid: getpid())) }
        }
        WorkerBootstrap.listenToSupervisor(context) { message in
            switch message {
            case .supervisorPing:
                group.next().execute { context.status?.send(.workerHeartbeat(pid: getpid())) }
            case .supervisorSnapshot(let json):
                if !snapshots.update(json: json) { logger.warning("a snapshot from the supervisor did not decode") }
            case .supervisorServe:
                server.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            case .supervisorDrain:
                stop("supervisor asked")
            default:
                logger.warning("unexpected pipe message \(message)")
            }
        }
        SignalTraps.onTerminate { stop("signal") }
        context.announceReady()
        try? server.closeFuture.wait()
        // Let the requests in progress (an admin action among them) finish; each step is one rename or unlink.
        try? pool.syncShutdownGracefully()
        exit(0)
    }
}
