import Foundation
import IPC

/// Files through which `mailer reload|stop|status` find a running supervisor: its pid and a status
/// document, in `<dataDir>/run/`.
///
/// The data directory belongs to the run-as user, so the supervisor (root) owns `run/` itself,
/// opens it with O_NOFOLLOW, checks its owner and then works only through that descriptor: a worker
/// cannot point root's writes elsewhere with a symbolic link. A pid is only signalled when that
/// process runs this same binary, so a forged pid file cannot make root signal another program.
final class ControlFiles {
    let dataDir: String
    private var directoryFD: Int32 = -1

    init(dataDir: String) { self.dataDir = dataDir }

    deinit { if self.directoryFD >= 0 { close(self.directoryFD) } }

    var statusPath: String { (self.dataDir as NSString).appendingPathComponent("run/status.json") }

    /// Creates (or checks) `run/`, owned by this process's user, mode 0755.
    func prepare() throws {
        let base = open(self.dataDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if base < 0 { throw SpoolError("open", path: self.dataDir) }
        defer { close(base) }
        let fd = try Spool.openDirectory(relative: "run", below: base, dataDir: self.dataDir, create: true, mode: 0o755)
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == geteuid() else {
            close(fd)
            throw SpoolError("refusing a run directory owned by another user:",
                             path: (self.dataDir as NSString).appendingPathComponent("run"), errno: EPERM)
        }
        fchmod(fd, 0o755)
        self.directoryFD = fd
    }

    func writePID() throws {
        try self.write("mailer.pid", Data("\(getpid())\n".utf8))
    }

    /// The configuration file the running supervisor reloads from (empty: the built-in defaults).
    func writeConfigPath(_ path: String?) throws {
        try self.write("config.path", Data("\(path ?? "")\n".utf8))
    }

    func runningConfigPath() -> String? {
        self.read("config.path").map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .newlines) }
    }

    func writeStatus(_ snapshot: MonitorSnapshot) {
        guard let data = try? JSONEncoder().encode(snapshot) else { return }
        try? self.write("status.json", data)
    }

    func remove() {
        guard self.directoryFD >= 0 else { return }
        unlinkat(self.directoryFD, "mailer.pid", 0)
        unlinkat(self.directoryFD, "status.json", 0)
        unlinkat(self.directoryFD, "config.path", 0)
    }

    private func write(_ name: String, _ data: Data) throws {
        guard self.directoryFD >= 0 else { return }
        let tmp = "\(name).tmp"
        let fd = openat(self.directoryFD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if fd < 0 { throw SpoolError("create", path: tmp) }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == data.count, renameat(self.directoryFD, tmp, self.directoryFD, name) == 0 else {
            unlinkat(self.directoryFD, tmp, 0)
            throw SpoolError("write", path: name)
        }
    }

    // MARK: - Reading (the CLI)

    private func read(_ name: String) -> Data? {
        let base = open(self.dataDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if base < 0 { return nil }
        defer { close(base) }
        guard let dir = try? Spool.openDirectory(relative: "run", below: base, dataDir: self.dataDir, create: false)
        else { return nil }
        defer { close(dir) }
        let fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        return data
    }

    /// The running supervisor's pid, if there is one running this binary.
    func runningPID() -> pid_t? {
        guard let data = self.read("mailer.pid"),
              let pid = pid_t(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
              pid > 1, kill(pid, 0) == 0 || errno == EPERM
        else { return nil }
        let mine = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var theirs = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"
        // After the binary was upgraded in place, the running one shows as "PATH (deleted)".
        if theirs.hasSuffix(" (deleted)") { theirs = String(theirs.dropLast(" (deleted)".count)) }
        return mine == theirs ? pid : nil
    }

    func readStatus() -> MonitorSnapshot? {
        guard let data = self.read("status.json") else { return nil }
        return try? JSONDecoder().decode(MonitorSnapshot.self, from: data)
    }
}
