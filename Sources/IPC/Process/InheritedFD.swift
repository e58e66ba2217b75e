/// The fixed descriptor numbers a worker finds open when the supervisor starts it. Declared once,
/// here; the supervisor dup2()s onto them and closes everything above `lastInherited`.
///
/// | fd | receiver                 | forwarder               | monitor                  |
/// |----|--------------------------|-------------------------|--------------------------|
/// | 3  | SMTP listening socket    | –                       | –                        |
/// | 4  | –                        | –                       | HTTP listening socket    |
/// | 5  | control pipe (read)      | control pipe (read)     | control pipe (read)      |
/// | 6  | status pipe (write)      | status pipe (write)     | status pipe (write)      |
/// | 7  | wake pipe (write)        | wake pipe (read)        | wake pipe (write)        |
public enum InheritedFD {
    public static let smtpListener: Int32 = 3
    public static let httpListener: Int32 = 4
    /// Supervisor → worker messages (`PipeMessage`). EOF means the supervisor is gone: exit.
    public static let control: Int32 = 5
    /// Worker → supervisor messages (`PipeMessage`).
    public static let status: Int32 = 6
    /// One-byte hints "a message is in new/" from receivers (and the monitor's retry) to forwarders. The supervisor holds both
    /// ends for its whole life, so restarting either side never loses the channel.
    public static let wake: Int32 = 7
    public static let lastInherited: Int32 = 7
}

/// The three worker roles; the raw value is the hidden subcommand (`mailer worker receiver`).
public enum WorkerRole: String, CaseIterable, Sendable {
    case receiver, forwarder, monitor
}

/// Environment variables the supervisor sets for each worker.
public enum WorkerEnvironment {
    /// The generation number of this start (bumped by every reload).
    public static let generation = "MAILER_GENERATION"
    /// Set when the worker must drop to the run-as user (the supervisor runs as root).
    public static let dropToUser = "MAILER_DROP_TO"
    /// Set for a receiver or monitor of a generation that a reload is starting: it binds and says
    /// ready but accepts only after `supervisorServe`, once the running generation stopped accepting.
    public static let standby = "MAILER_STANDBY"
    /// Set for a forwarder started while deliveries are paused (admin API): it starts paused, so a
    /// restart or reload never delivers anything before the pause reaches it.
    public static let paused = "MAILER_PAUSED"
}
