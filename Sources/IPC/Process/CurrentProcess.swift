import CMailerSys
import Foundation

/// Facts about this process that cannot change while it runs. Workers are started with
/// `posix_spawn` (fork and exec in one), never forked without exec, so the pid read once stays true.
public enum CurrentProcess {
    /// `getpid()`, read once: glibc does not cache it, and queue ids, spool file names and log
    /// lines need it per message.
    public static let id: pid_t = getpid()

    /// Makes this thread, and every thread it starts afterwards, background work for the scheduler
    /// (`SCHED_BATCH`): when it wakes up it waits for the running thread's time slice instead of
    /// preempting it. Its share of the CPU does not change. Threads started before the call keep
    /// their policy: call it before starting the threads it is meant for.
    @discardableResult
    public static func scheduleAsBatch() -> Bool {
        csystem_sched_batch() == 0
    }
}
