import Foundation

/// Facts about this process that cannot change while it runs. Workers are started with
/// `posix_spawn` (fork and exec in one), never forked without exec, so the pid read once stays true.
public enum CurrentProcess {
    /// `getpid()`, read once: glibc does not cache it, and queue ids, spool file names and log
    /// lines need it per message.
    public static let id: pid_t = getpid()
}
