import CMailerSys
import Foundation
import IPC

/// Starts a worker: posix_spawn of this same executable (`/proc/self/exe worker <role>`) with the
/// given descriptors dup2()ed onto their fixed numbers, every other descriptor closed, and the
/// signal mask and dispositions reset. Foundation's Process cannot hand down extra descriptors.
enum Spawner {
    struct SpawnError: Error, CustomStringConvertible {
        let description: String
    }

    /// `fds` maps the number in the child to the descriptor in the supervisor.
    static func spawn(arguments: [String], fds: [Int32: Int32], environment: [String: String]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Move every source out of the 3...lastInherited range first, so that no dup2 overwrites a
        // source another one still needs.
        var staged: [(target: Int32, temp: Int32)] = []
        var temps: [Int32] = []
        for (target, source) in fds.sorted(by: { $0.key < $1.key }) {
            let temp = fcntl(source, F_DUPFD_CLOEXEC, 100)
            guard temp >= 0 else { throw SpawnError(description: "dup of fd \(source): \(String(cString: strerror(errno)))") }
            temps.append(temp)
            staged.append((target, temp))
        }
        defer { for temp in temps { close(temp) } }
        for (target, temp) in staged { posix_spawn_file_actions_adddup2(&actions, temp, target) }
        csystem_spawn_addclosefrom(&actions, InheritedFD.lastInherited + 1)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGHUP, SIGINT, SIGCHLD, SIGPIPE, SIGQUIT, SIGUSR1, SIGUSR2] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = arguments.map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for entry in envp { free(entry) } }

        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, argv, envp)
        guard result == 0 else { throw SpawnError(description: "posix_spawn: \(String(cString: strerror(result)))") }
        return pid
    }
}
