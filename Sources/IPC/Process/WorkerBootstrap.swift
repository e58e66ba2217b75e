import Foundation
import Logging

/// What every worker has once it is set up: its role and generation, the configuration, a logger,
/// and its status pipe to the supervisor.
public struct WorkerContext: Sendable {
    public let role: WorkerRole
    public let generation: Int
    public let config: MailerConfig
    public let logger: Logger
    /// nil when the worker runs without a supervisor (tests of a single role).
    public let status: PipeWriter?
    public let reporter: StatusReporter
    /// A listening worker that must not accept until `supervisorServe` (see `WorkerEnvironment.standby`).
    public let standby: Bool
    /// A forwarder that starts with deliveries paused (see `WorkerEnvironment.paused`).
    public let paused: Bool

    /// Tells the supervisor the worker serves.
    public func announceReady() {
        self.status?.send(.workerReady(role: self.role.rawValue, pid: getpid(), generation: self.generation))
    }
}

/// The steps every worker takes, in this order and nowhere else: read the configuration (it may be
/// readable by root only) and forget the secrets the role has no use for, set up logging, drop privileges when the supervisor asked for it, then
/// hand over to the role. Only after this does a worker read a byte from a client.
public enum WorkerBootstrap {
    public static func start(role: WorkerRole, configPath: String?) throws -> WorkerContext {
        let environment = ProcessInfo.processInfo.environment
        let generation = Int(environment[WorkerEnvironment.generation] ?? "") ?? 0
        let loaded = try ConfigLoader.load(path: configPath)
        // Forget what this role does not need, in memory and in the environment.
        let config = loaded.config.keepingSecrets(for: role)
        for name in ["DEFAULT_PASSWORD", "FORWARD_PASSWORD", "MAILER_ADMIN_TOKEN"] { unsetenv(name) }
        MailerLogHandler.bootstrap(label: "mailer/\(role.rawValue)", logFile: loaded.config.logFile)
        var logger = Logger(label: "mailer/\(role.rawValue)")
        logger[metadataKey: "gen"] = "\(generation)"

        if let user = environment[WorkerEnvironment.dropToUser], !user.isEmpty {
            let account = try Privileges.lookup(user)
            try Privileges.drop(to: account)
            logger.debug("dropped privileges", metadata: ["user": "\(user)", "uid": "\(account.uid)"])
        }
        let hasSupervisor = fcntl(InheritedFD.status, F_GETFD) >= 0
        let writer = hasSupervisor ? PipeWriter(fd: InheritedFD.status) : nil
        return WorkerContext(
            role: role, generation: generation, config: config, logger: logger, status: writer,
            reporter: StatusReporter(writer: writer), standby: environment[WorkerEnvironment.standby] == "1",
            paused: environment[WorkerEnvironment.paused] == "1")
    }

    /// Reads the control pipe: `onMessage` gets each message; EOF (the supervisor is gone) ends the process.
    public static func listenToSupervisor(
        _ context: WorkerContext, onMessage: @escaping @Sendable (PipeMessage) -> Void
    ) {
        guard fcntl(InheritedFD.control, F_GETFD) >= 0 else { return }
        let logger = context.logger
        PipeReaderThread(fd: InheritedFD.control, handler: onMessage, onClose: { reason in
            logger.info("supervisor pipe closed (\(reason)): exiting")
            exit(0)
        }).start()
    }
}
