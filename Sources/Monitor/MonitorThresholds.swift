/// The thresholds behind `/health`'s `degraded` and `error`.
enum MonitorThresholds {
    /// Less free space than this on the data directory's file system is `degraded` (100 MiB).
    static let lowDiskBytes: UInt64 = 100 * 1024 * 1024
    /// More messages than this in failed/ is a backlog (the guide's monitoring script alerts above 100).
    static let failedBacklog = 100
    /// A message waiting longer than this (seconds) is `degraded`.
    static let oldestQueuedAge: Double = 3600
    /// A snapshot older than this (seconds) means the supervisor stopped talking: `error`.
    static let staleSnapshot: Double = 10
}
