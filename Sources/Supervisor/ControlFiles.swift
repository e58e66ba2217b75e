import Foundation
import IPC

/// Files through which `mailer reload|stop|status` find a running supervisor: its pid and a status
/// document, in `<dataDir>/run/`. A pid is only signalled when that process runs this same binary,
/// so a forged pid file cannot make root signal another program.
struct ControlFiles {
    let directory: String

    init(dataDir: String) { self.directory = (dataDir as NSString).appendingPathComponent("run") }

    var pidPath: String { (self.directory as NSString).appendingPathComponent("mailer.pid") }
    var statusPath: String { (self.directory as NSString).appendingPathComponent("status.json") }

    func prepare() throws {
        if mkdir(self.directory, 0o755) != 0 && errno != EEXIST {
            throw SpoolError("mkdir", path: self.directory)
        }
    }

    func writePID() throws {
        try "\(getpid())\n".write(toFile: self.pidPath, atomically: true, encoding: .utf8)
    }

    func writeStatus(_ snapshot: MonitorSnapshot) {
        guard let data = try? JSONEncoder().encode(snapshot) else { return }
        let tmp = self.statusPath + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: data) { rename(tmp, self.statusPath) }
    }

    func remove() {
        unlink(self.pidPath)
        unlink(self.statusPath)
    }

    /// The running supervisor's pid, if there is one running this binary.
    func runningPID() -> pid_t? {
        guard let text = try? String(contentsOfFile: self.pidPath, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1,
              kill(pid, 0) == 0 || errno == EPERM
        else { return nil }
        let mine = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        let theirs = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")) ?? "?"
        return mine == theirs ? pid : nil
    }

    func readStatus() -> MonitorSnapshot? {
        guard let data = FileManager.default.contents(atPath: self.statusPath) else { return nil }
        return try? JSONDecoder().decode(MonitorSnapshot.self, from: data)
    }
}
