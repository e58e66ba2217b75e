import Foundation
import IPC

/// How the monitor looks at the machine. Replaced in tests to simulate a full disk or a read-only spool.
struct MonitorProbes: Sendable {
    var now: @Sendable () -> Date
    var diskFreeBytes: @Sendable (_ path: String) -> UInt64?
    var spoolWritable: @Sendable (_ spool: Spool) -> Bool

    static let system = MonitorProbes(
        now: { Date() }, diskFreeBytes: { MonitorProbes.statvfsFree($0) },
        spoolWritable: { MonitorProbes.probeWrite($0) })

    /// statvfs: blocks available to unprivileged users × fragment size.
    static func statvfsFree(_ path: String) -> UInt64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize)
    }

    /// Creates and removes `queue/tmp/monitor-probe.<pid>`. The name ends in the monitor's pid, so the
    /// receivers' clean-up of abandoned files leaves it alone while the monitor lives.
    static func probeWrite(_ spool: Spool) -> Bool {
        let path = spool.path(.tmp, "monitor-probe.\(getpid())")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        var byte: UInt8 = 0x0a
        let wrote = write(fd, &byte, 1) == 1
        close(fd)
        return unlink(path) == 0 && wrote
    }
}
