import CMailerSys
import Foundation
import IPC
import Logging
import Receiver

/// The file descriptor the C signal handler writes to (the self-pipe).
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

/// mailer (supervisor) — binds the ports, starts the workers, restarts them, reloads and stops.
///
/// **Summary.** The only process that may keep root: it reads the configuration, creates the data
/// directory for the run-as user, binds the SMTP port (and the monitor's), then starts one receiver,
/// one forwarder and one monitor (fork+exec of itself via posix_spawn) and watches them. It never
/// reads from the network.
///
/// **Pipes.** Per worker a control pipe (supervisor → worker, fd 5) and a status pipe (worker →
/// supervisor, fd 6), made anew for each start; one wake pipe (receivers → forwarders, fd 7) held
/// open here for the whole run so that a restart on either side keeps it. Counters from the
/// workers are aggregated here and sent to the monitor as a snapshot each second.
///
/// **Signals.** SIGCHLD: reap and restart (with backoff; a crash loop is logged). SIGHUP: reload —
/// re-read the configuration (a bad one keeps the running generation), start a new generation
/// beside the running one, and drain the old one only once every new worker said it is ready; a
/// new worker that exits or is not ready within `heartbeatTimeout` abandons the reload and the
/// running generation stays. SIGTERM/SIGINT: drain every worker and exit within `drainTimeout` + 5 s.
/// Signals arrive through a self-pipe, handled in the poll loop.
///
/// **Heartbeats.** Each worker is pinged (every 5 s by default); one that has not answered for
/// `heartbeatTimeout` seconds (30), or has not said it is ready that long after its start, is
/// wedged, and is killed and restarted.
///
/// **systemd.** READY=1 once every worker is up, RELOADING=1 / READY=1 around a reload,
/// STOPPING=1, and WATCHDOG=1 pings when `WATCHDOG_USEC` is set.
final class Supervisor {
    private let configPath: String?
    private var config: MailerConfig
    private let logger: Logger
    /// The generation that serves; `pending` is the one a reload is starting.
    private var generation = 1
    private var pending: PendingReload?
    /// After a reload: the old receivers and monitors that have not yet said they stopped
    /// accepting, and since when; the new ones in standby are served once this is empty.
    private var releasing: (pids: Set<pid_t>, since: Date)?
    /// The highest generation number handed out (an abandoned reload's number is not reused).
    private var lastGeneration = 1
    private var smtp: Listener
    private var http: Listener?
    /// Listeners no longer handed to new workers, closed once no worker of their generation is left.
    private var retiredListeners: [(generation: Int, fd: Int32)] = []
    private let wake: (read: Int32, write: Int32)
    private let signalRead: Int32
    private var workers: [WorkerProcess] = []
    private var restartState: [WorkerRole: RestartState] = [:]
    private var metrics = MetricsStore()
    private var paused = false
    private var stopping: Date?
    private var account: Privileges.Account?
    private let controlFiles: ControlFiles
    private let notifier = SystemdNotifier()
    private var notifiedReady = false
    private let startedAt = Date()
    private var lastPing = Date()
    private var lastSnapshot = Date.distantPast
    private var lastWatchdog = Date.distantPast
    /// Pings go out at a third of the timeout (at most every 5 s), so one lost ping is not fatal.
    private var heartbeatInterval: TimeInterval { min(5, Double(self.config.heartbeatTimeout) / 3) }

    init(configPath: String?, loaded: ConfigLoader.Result) throws {
        umask(0o027)
        signal(SIGPIPE, SIG_IGN)
        self.configPath = configPath
        var config = loaded.config
        MailerLogHandler.bootstrap(label: "mailer/supervisor", logFile: config.logFile)
        self.logger = Logger(label: "mailer/supervisor")
        for warning in loaded.warnings { self.logger.warning("\(warning)") }
        if !Privileges.isRoot {
            if config.smtpPort > 0 && config.smtpPort < 1024 {
                self.logger.warning("not running as root: smtpPort \(config.smtpPort) needs root, listening on 2525 instead (set \"smtpPort\" in the config to choose)")
                config.smtpPort = 2525
            }
        }
        self.config = config
        self.controlFiles = ControlFiles(dataDir: config.dataDir)

        // The data directory belongs to the run-as user; root only creates and hands it over.
        if Privileges.isRoot {
            do {
                self.account = try Privileges.lookup(config.user)
            } catch {
                self.logger.critical("\(error)")
                throw ExitCodeError(code: 67)  // EX_NOUSER
            }
        }
        let spool = Spool(dataDir: config.dataDir)
        do {
            try spool.createDirectories(owner: self.account.map { ($0.uid, $0.gid) })
            try self.controlFiles.prepare()
        } catch {
            self.logger.critical("cannot prepare the data directory: \(error)")
            throw ExitCodeError(code: 73)  // EX_CANTCREAT
        }
        if let pid = self.controlFiles.runningPID(), pid != getpid() {
            self.logger.critical("another mailer (pid \(pid)) already serves \(config.dataDir)")
            throw ExitCodeError(code: 75)
        }

        do {
            self.smtp = try Listener.bind(host: config.smtpHost, port: config.smtpPort, key: "smtpHost/smtpPort")
            if config.enableHealthCheck {
                self.http = try Listener.bind(host: "127.0.0.1", port: config.healthCheckPort, key: "healthCheckPort")
            }
        } catch {
            self.logger.critical("\(error)")
            throw ExitCodeError(code: 71)  // EX_OSERR
        }
        var wakeFDs: [Int32] = [0, 0]
        guard csystem_pipe_cloexec(&wakeFDs, O_NONBLOCK) == 0 else { throw ExitCodeError(code: 71) }
        self.wake = (wakeFDs[0], wakeFDs[1])
        var signalFDs: [Int32] = [0, 0]
        guard csystem_pipe_cloexec(&signalFDs, O_NONBLOCK) == 0 else { throw ExitCodeError(code: 71) }
        self.signalRead = signalFDs[0]
        signalPipeWrite = signalFDs[1]
    }

    struct ExitCodeError: Error {
        let code: Int32
    }

    /// A reload whose workers have not all said they are ready yet: what they were started with.
    private struct PendingReload {
        let generation: Int
        let config: MailerConfig
        let smtp: Listener
        let http: Listener?
        let startedAt = Date()
    }

    // MARK: - Main loop

    func run() throws {
        for sig in [SIGCHLD, SIGHUP, SIGTERM, SIGINT] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(signalPipeWrite, &byte, 1)
            }
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
        try? self.controlFiles.writePID()
        try? self.controlFiles.writeConfigPath(self.configPath)
        self.logger.info("mailer starting", metadata: [
            "smtp": "\(self.smtp.host):\(self.smtp.port)",
            "http": "\(self.http.map { "127.0.0.1:\($0.port)" } ?? "off")",
            "data": "\(self.config.dataDir)", "user": "\(self.account?.name ?? "(not root: no drop)")",
            "mode": "\(self.config.localMode ? "local" : "forwarding")",
        ])
        for spec in WorkerSpec.table(for: self.config) { self.start(spec.role, generation: self.generation) }

        while true {
            var fds = [pollfd(fd: self.signalRead, events: Int16(POLLIN), revents: 0)]
            fds += self.workers.map { pollfd(fd: $0.statusFD, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), 250)
            if ready < 0 && errno != EINTR { self.logger.error("poll: \(String(cString: strerror(errno)))") }
            if fds[0].revents != 0 { self.handleSignals() }
            for pfd in fds.dropFirst() where pfd.revents != 0 {
                let worker = self.workers.first { $0.statusFD == pfd.fd }
                if let worker = worker { self.readStatus(worker) }
            }
            if self.tick() { break }
        }
        self.controlFiles.remove()
        self.logger.info("mailer stopped")
    }

    /// Timers: restarts due, heartbeats, snapshot, watchdog, stop deadline. True when it is time to exit.
    private func tick() -> Bool {
        let now = Date()
        if let stopping = self.stopping {
            if self.workers.isEmpty { return true }
            if now.timeIntervalSince(stopping) > Double(self.config.drainTimeout) + 5 {
                for worker in self.workers {
                    self.logger.warning("\(worker.role.rawValue) pid \(worker.pid) did not stop in time: killing")
                    self.kill(worker, SIGKILL)
                }
            }
            return false
        }
        for spec in WorkerSpec.table(for: self.config) {
            let running = self.workers.contains { $0.role == spec.role && $0.generation == self.generation }
            if !running, let due = self.restartState[spec.role]?.nextStart, due <= now {
                self.start(spec.role, generation: self.generation)
            }
        }
        if let releasing = self.releasing, now.timeIntervalSince(releasing.since) > 2 {
            self.logger.warning("old workers \(releasing.pids.sorted()) did not confirm they stopped accepting: serving anyway")
            self.serveStandby()
        }
        let startTimeout = Double(self.config.heartbeatTimeout)
        if let pending = self.pending, now.timeIntervalSince(pending.startedAt) > startTimeout {
            let late = self.workers.filter { $0.generation == pending.generation && $0.state == .starting }
            self.abandonReload("\(late.map(\.role.rawValue).joined(separator: ", ")) not ready after \(Int(startTimeout)) s")
        }
        for worker in self.workers where worker.state == .starting && worker.generation == self.generation
            && now.timeIntervalSince(worker.startedAt) > startTimeout {
            self.logger.error("\(worker.role.rawValue) pid \(worker.pid) not ready \(Int(startTimeout)) s after its start: killing it")
            self.kill(worker, SIGKILL)
        }
        if now.timeIntervalSince(self.lastPing) >= self.heartbeatInterval {
            self.lastPing = now
            for worker in self.workers where worker.state == .running {
                if now.timeIntervalSince(worker.lastHeartbeat) > Double(self.config.heartbeatTimeout) {
                    self.logger.error("\(worker.role.rawValue) pid \(worker.pid) stopped answering heartbeats: killing it")
                    self.kill(worker, SIGKILL)
                } else {
                    worker.control.send(.supervisorPing)
                }
            }
        }
        for worker in self.workers where worker.state == .draining {
            // A forwarder's delivery in flight may take up to `processingTimeout`: let it finish.
            let bound = Double(worker.role == .forwarder ? max(self.config.drainTimeout, self.config.processingTimeout)
                                                         : self.config.drainTimeout)
            if let since = worker.drainStartedAt, now.timeIntervalSince(since) > bound + 5 {
                self.logger.warning("old \(worker.role.rawValue) pid \(worker.pid) still draining: killing it")
                self.kill(worker, SIGKILL)
                worker.drainStartedAt = nil
            }
        }
        if now.timeIntervalSince(self.lastSnapshot) >= 1 {
            self.lastSnapshot = now
            self.publishSnapshot()
        }
        if let interval = self.notifier.watchdogInterval, now.timeIntervalSince(self.lastWatchdog) >= interval {
            self.lastWatchdog = now
            self.notifier.notify("WATCHDOG=1")
        }
        return false
    }

    // MARK: - Workers

    /// Starts a worker of `generation`: the serving one (its config and listeners), or the pending one.
    private func start(_ role: WorkerRole, generation: Int) {
        let pending = self.pending.flatMap { $0.generation == generation ? $0 : nil }
        let (smtp, http) = pending.map { ($0.smtp, $0.http) } ?? (self.smtp, self.http)
        var control: [Int32] = [0, 0]
        var status: [Int32] = [0, 0]
        guard csystem_pipe_cloexec(&control, 0) == 0, csystem_pipe_cloexec(&status, 0) == 0 else {
            self.startFailed(role, generation: generation, "cannot create pipes for \(role.rawValue): \(String(cString: strerror(errno)))")
            return
        }
        var fds: [Int32: Int32] = [InheritedFD.control: control[0], InheritedFD.status: status[1]]
        switch role {
        case .receiver:
            fds[InheritedFD.smtpListener] = smtp.fd
            fds[InheritedFD.wake] = self.wake.write
        case .forwarder:
            fds[InheritedFD.wake] = self.wake.read
        case .monitor:
            if let http { fds[InheritedFD.httpListener] = http.fd }
            fds[InheritedFD.wake] = self.wake.write
        }
        var environment = [WorkerEnvironment.generation: String(generation)]
        let standby = pending != nil && role != .forwarder
        if standby { environment[WorkerEnvironment.standby] = "1" }
        if role == .forwarder && self.paused { environment[WorkerEnvironment.paused] = "1" }
        if let account = self.account { environment[WorkerEnvironment.dropToUser] = account.name }
        var arguments = ["mailer", "worker", role.rawValue]
        if let path = self.configPath { arguments += ["-config", path] }
        do {
            let pid = try Spawner.spawn(arguments: arguments, fds: fds, environment: environment)
            close(control[0])
            close(status[1])
            _ = fcntl(control[1], F_SETFL, O_NONBLOCK)
            _ = fcntl(status[0], F_SETFL, O_NONBLOCK)
            let worker = WorkerProcess(role: role, pid: pid, generation: generation,
                                       controlFD: control[1], statusFD: status[0])
            worker.standby = standby
            self.workers.append(worker)
            if generation == self.generation { self.restartState[role, default: RestartState()].nextStart = nil }
            self.logger.info("started \(role.rawValue)", metadata: ["pid": "\(pid)", "gen": "\(generation)"])
        } catch {
            for fd in control + status { close(fd) }
            self.startFailed(role, generation: generation, "cannot start \(role.rawValue): \(error)")
        }
    }

    /// A worker could not be started: the serving generation tries again in a second; a pending
    /// reload is abandoned.
    private func startFailed(_ role: WorkerRole, generation: Int, _ reason: String) {
        self.logger.error("\(reason)")
        if generation == self.generation {
            self.restartState[role, default: RestartState()].nextStart = Date().addingTimeInterval(1)
        } else {
            self.abandonReload(reason)
        }
    }

    private func kill(_ worker: WorkerProcess, _ signal: Int32) {
        if Glibc.kill(worker.pid, signal) != 0 {
            self.logger.error("cannot signal \(worker.role.rawValue) pid \(worker.pid): \(String(cString: strerror(errno)))")
        }
    }

    private func readStatus(_ worker: WorkerProcess) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(worker.statusFD, $0.baseAddress!, $0.count) }
            if n <= 0 { return }  // EAGAIN, or EOF: SIGCHLD follows
            worker.decoder.append(buffer[0..<n])
            do {
                while let message = try worker.decoder.next() { self.handle(message, from: worker) }
            } catch {
                self.logger.error("\(worker.role.rawValue) pid \(worker.pid) sent a malformed message (\(error)): killing it")
                self.kill(worker, SIGKILL)
                return
            }
        }
    }

    private func handle(_ message: PipeMessage, from worker: WorkerProcess) {
        switch message {
        case .workerReady(_, _, let generation):
            guard generation == worker.generation else { return }
            if worker.state == .starting { worker.state = .running }
            worker.lastHeartbeat = Date()
            self.logger.info("\(worker.role.rawValue) ready", metadata: ["pid": "\(worker.pid)", "gen": "\(generation)"])
            if worker.role == .forwarder && self.paused { worker.control.send(.supervisorPause) }
            if generation == self.pending?.generation { self.completeReloadIfReady() }
            self.publishSnapshot()
            self.notifyReadyIfServing()
        case .workerHeartbeat:
            worker.lastHeartbeat = Date()
        case .workerStoppedAccepting:
            worker.stoppedAccepting = true
            self.released(worker)
        case .workerCounter, .workerGauge, .workerObservation:
            self.metrics.apply(message)
        case .monitorAdmin(let action):
            guard worker.role == .monitor else { return }
            switch action {
            case "pause", "resume":
                self.paused = action == "pause"
                self.logger.info("deliveries \(self.paused ? "paused" : "resumed") by the admin API")
                for forwarder in self.workers where forwarder.role == .forwarder {
                    forwarder.control.send(self.paused ? .supervisorPause : .supervisorResume)
                }
                self.publishSnapshot()
            case "reload":
                self.reload()
            default:
                self.logger.warning("unknown admin action \(action)")
            }
        case .supervisorPing, .supervisorDrain, .supervisorServe, .supervisorPause, .supervisorResume, .supervisorSnapshot:
            self.logger.error("\(worker.role.rawValue) sent a supervisor message: killing it")
            self.kill(worker, SIGKILL)
        }
    }

    private func notifyReadyIfServing() {
        guard self.pending == nil else { return }  // READY=1 follows RELOADING=1 when the reload ends
        let roles = Set(self.workers.filter { $0.generation == self.generation && $0.state == .running }.map(\.role))
        if Set(WorkerSpec.table(for: self.config).map(\.role)).isSubset(of: roles) {
            if !self.notifiedReady { self.logger.info("serving", metadata: ["gen": "\(self.generation)"]) }
            self.notifiedReady = true
            self.notifier.notify("READY=1\nSTATUS=serving generation \(self.generation)")
        }
    }

    // MARK: - Signals

    private func handleSignals() {
        var buffer = [UInt8](repeating: 0, count: 64)
        var signals = Set<Int32>()
        while true {
            let n = read(self.signalRead, &buffer, buffer.count)
            if n <= 0 { break }
            for byte in buffer[0..<n] { signals.insert(Int32(byte)) }
        }
        if signals.contains(SIGCHLD) { self.reap() }
        if signals.contains(SIGHUP) { self.reload() }
        if signals.contains(SIGTERM) || signals.contains(SIGINT) { self.stop() }
    }

    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            guard let index = self.workers.firstIndex(where: { $0.pid == pid }) else { continue }
            let worker = self.workers.remove(at: index)
            self.readStatus(worker)
            worker.closePipes()
            self.released(worker)
            let signal = status & 0x7f
            let description = signal != 0 ? "killed by signal \(signal)" : "exited with status \((status >> 8) & 0xff)"
            self.closeRetiredListeners()
            if worker.generation == self.pending?.generation && worker.state != .draining && self.stopping == nil {
                self.abandonReload("new \(worker.role.rawValue) pid \(worker.pid) \(description)")
                continue
            }
            if worker.state == .draining || self.stopping != nil || worker.generation != self.generation {
                self.logger.info("\(worker.role.rawValue) pid \(worker.pid) (gen \(worker.generation)) \(description)")
                continue
            }
            let spec = WorkerSpec.table(for: self.config).first { $0.role == worker.role } ?? WorkerSpec(role: worker.role)
            var state = self.restartState[worker.role, default: RestartState()]
            let delay = state.recordExit(after: Date().timeIntervalSince(worker.startedAt), spec: spec, description: description)
            self.restartState[worker.role] = state
            self.metrics.add(counter: "mailer_worker_restarts_total", labels: "worker=\(worker.role.rawValue)")
            if state.crashLooping(spec) {
                self.logger.critical("\(worker.role.rawValue) is crash-looping (\(state.quickFailures) quick failures): \(description); next start in \(String(format: "%.1f", delay)) s")
            } else {
                self.logger.error("\(worker.role.rawValue) pid \(worker.pid) \(description): restarting in \(String(format: "%.1f", delay)) s")
            }
            self.publishSnapshot()
        }
    }

    /// SIGHUP or `mailer reload`: re-read and validate; a bad configuration keeps the running generation.
    private func reload() {
        guard self.stopping == nil else { return }
        if self.pending != nil { self.abandonReload("superseded by a newer reload") }
        let loaded: ConfigLoader.Result
        do {
            loaded = try ConfigLoader.load(path: self.configPath)
            try ReceiverWorker.checkFiles(loaded.config)
        } catch {
            self.logger.error("reload refused, keeping generation \(self.generation): \(error)")
            return
        }
        self.notifier.notify("RELOADING=1")
        var newConfig = loaded.config
        for warning in loaded.warnings { self.logger.warning("\(warning)") }
        if !Privileges.isRoot && newConfig.smtpPort > 0 && newConfig.smtpPort < 1024 { newConfig.smtpPort = self.smtp.port }
        guard newConfig.dataDir == self.config.dataDir, newConfig.user == self.config.user else {
            self.logger.error("reload refused: dataDir and user can only change with a restart")
            self.notifier.notify("READY=1")
            return
        }
        var newSMTP = self.smtp
        var newHTTP = self.http
        do {
            if newConfig.smtpHost != self.config.smtpHost || newConfig.smtpPort != self.config.smtpPort {
                newSMTP = try Listener.bind(host: newConfig.smtpHost, port: newConfig.smtpPort, key: "smtpHost/smtpPort")
            }
            if !newConfig.enableHealthCheck {
                newHTTP = nil
            } else if newConfig.healthCheckPort != self.config.healthCheckPort || self.http == nil {
                newHTTP = try Listener.bind(host: "127.0.0.1", port: newConfig.healthCheckPort, key: "healthCheckPort")
            }
        } catch {
            if newSMTP.fd != self.smtp.fd { close(newSMTP.fd) }
            self.logger.error("reload refused, keeping generation \(self.generation): \(error)")
            self.notifier.notify("READY=1")
            return
        }
        self.lastGeneration += 1
        let pending = PendingReload(generation: self.lastGeneration, config: newConfig, smtp: newSMTP, http: newHTTP)
        self.pending = pending
        self.logger.info("reloading: starting generation \(pending.generation) beside \(self.generation)")
        for spec in WorkerSpec.table(for: newConfig) where self.pending?.generation == pending.generation {
            self.start(spec.role, generation: pending.generation)
        }
    }

    /// Every worker of the pending generation said it is ready: it serves, the old one drains.
    private func completeReloadIfReady() {
        guard let pending = self.pending else { return }
        let ready = Set(self.workers.filter { $0.generation == pending.generation && $0.state == .running }.map(\.role))
        guard Set(WorkerSpec.table(for: pending.config).map(\.role)).isSubset(of: ready) else { return }
        let old = self.generation
        if pending.smtp.fd != self.smtp.fd { self.retiredListeners.append((old, self.smtp.fd)) }
        if let http = self.http, pending.http?.fd != http.fd { self.retiredListeners.append((old, http.fd)) }
        self.smtp = pending.smtp
        self.http = pending.http
        self.config = pending.config
        self.generation = pending.generation
        self.pending = nil
        self.notifiedReady = false
        for worker in self.workers where worker.generation != self.generation && worker.state != .draining {
            worker.state = .draining
            worker.drainStartedAt = Date()
            worker.control.send(.supervisorDrain)
        }
        // The new receiver and monitor accept once the old ones stopped: never two at once.
        let accepting = self.workers.filter {
            $0.generation != self.generation && $0.role != .forwarder && !$0.standby && !$0.stoppedAccepting
        }
        self.releasing = (Set(accepting.map(\.pid)), Date())
        if accepting.isEmpty { self.serveStandby() }
        // The new generation starts with a clean backoff; restart counts stay for status and /health.
        for role in self.restartState.keys {
            self.restartState[role]?.quickFailures = 0
            self.restartState[role]?.nextStart = nil
        }
        self.logger.info("reloaded: generation \(self.generation) serving, generation \(old) draining")
        self.closeRetiredListeners()
    }

    /// `worker` no longer accepts (it said so, or exited); the last one lets the new generation serve.
    private func released(_ worker: WorkerProcess) {
        guard var releasing = self.releasing, releasing.pids.remove(worker.pid) != nil else { return }
        self.releasing = releasing
        if releasing.pids.isEmpty { self.serveStandby() }
    }

    private func serveStandby() {
        self.releasing = nil
        for worker in self.workers where worker.standby && worker.generation == self.generation {
            worker.standby = false
            worker.control.send(.supervisorServe)
        }
    }

    /// The pending generation failed: it is drained (or killed while still starting) and the
    /// running generation stays, with its configuration and listeners.
    private func abandonReload(_ reason: String) {
        guard let pending = self.pending else { return }
        self.pending = nil
        self.logger.error("reload failed, keeping generation \(self.generation): \(reason)")
        for worker in self.workers where worker.generation == pending.generation && worker.state != .draining {
            if worker.state == .starting { self.kill(worker, SIGKILL) } else { worker.control.send(.supervisorDrain) }
            worker.state = .draining
            worker.drainStartedAt = Date()
        }
        if pending.smtp.fd != self.smtp.fd { self.retiredListeners.append((pending.generation, pending.smtp.fd)) }
        if let http = pending.http, http.fd != self.http?.fd { self.retiredListeners.append((pending.generation, http.fd)) }
        self.closeRetiredListeners()
        self.notifier.notify("READY=1\nSTATUS=serving generation \(self.generation) (reload failed)")
        self.publishSnapshot()
    }

    private func closeRetiredListeners() {
        self.retiredListeners.removeAll { retired in
            guard !self.workers.contains(where: { $0.generation == retired.generation }) else { return false }
            close(retired.fd)
            return true
        }
    }

    private func stop() {
        guard self.stopping == nil else { return }
        self.stopping = Date()
        self.notifier.notify("STOPPING=1")
        self.logger.info("stopping: draining \(self.workers.count) workers")
        for worker in self.workers {
            worker.state = .draining
            worker.control.send(.supervisorDrain)
        }
    }

    // MARK: - Snapshot

    private func publishSnapshot() {
        var snapshot = MonitorSnapshot()
        snapshot.generation = self.generation
        snapshot.startedAt = self.startedAt.timeIntervalSince1970
        snapshot.paused = self.paused
        self.metrics.fill(&snapshot)
        var rows: [MonitorSnapshot.Worker] = self.workers.map { worker in
            let state = self.restartState[worker.role]
            return MonitorSnapshot.Worker(
                role: worker.role.rawValue, pid: worker.pid, generation: worker.generation,
                state: worker.state.rawValue, restarts: state?.restarts ?? 0,
                startedAt: worker.startedAt.timeIntervalSince1970, lastExit: state?.lastExit)
        }
        for spec in WorkerSpec.table(for: self.config)
        where !self.workers.contains(where: { $0.role == spec.role && $0.generation == self.generation }) {
            let state = self.restartState[spec.role] ?? RestartState()
            rows.append(MonitorSnapshot.Worker(
                role: spec.role.rawValue, pid: 0, generation: self.generation,
                state: state.crashLooping(spec) ? "crash-loop" : "restarting", restarts: state.restarts,
                startedAt: 0, lastExit: state.lastExit))
        }
        snapshot.workers = rows
        self.controlFiles.writeStatus(snapshot)
        guard let json = try? JSONEncoder().encode(snapshot) else { return }
        let message = PipeMessage.supervisorSnapshot(json: String(decoding: json, as: UTF8.self))
        for worker in self.workers where worker.role == .monitor && worker.state == .running {
            worker.control.send(message)
        }
    }
}
