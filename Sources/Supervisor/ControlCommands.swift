import ArgumentParser
import Foundation
import IPC

extension Mailer {
    struct Reload: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the configuration, then make the running mailer reload it (as SIGHUP does).")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let loaded = try self.options.load(checkingFiles: true)
            let control = ControlFiles(dataDir: loaded.config.dataDir)
            guard let pid = control.runningPID() else {
                throw ValidationError("no running mailer found for data directory \(loaded.config.dataDir)")
            }
            // The supervisor reloads the file it was started with: checking another one would prove nothing.
            if let running = control.runningConfigPath(), running != (self.options.absolutePath ?? "") {
                throw ValidationError(
                    "the running mailer (pid \(pid)) reads \(running.isEmpty ? "the built-in defaults" : running), "
                        + "not \(self.options.absolutePath ?? "the built-in defaults"): edit that file and reload, or restart it with this one")
            }
            guard kill(pid, SIGHUP) == 0 else { throw ValidationError("cannot signal pid \(pid): \(String(cString: strerror(errno)))") }
            print("reload requested (pid \(pid))")
        }
    }

    struct Stop: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the running mailer: drain the workers and exit.")
        @OptionGroup var options: ConfigOptions
        @Option(help: "Seconds to wait for it to exit.") var wait: Int = 60

        func run() throws {
            let loaded = try self.options.load()
            guard let pid = ControlFiles(dataDir: loaded.config.dataDir).runningPID() else {
                throw ValidationError("no running mailer found for data directory \(loaded.config.dataDir)")
            }
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(Double(self.wait))
            while Date() < deadline {
                if (kill(pid, 0) != 0 && errno == ESRCH) || Self.isZombie(pid) {
                    print("stopped (pid \(pid))")
                    return
                }
                usleep(100_000)
            }
            throw ValidationError("pid \(pid) is still running after \(self.wait) s")
        }

        /// An exited process its parent has not reaped yet (state Z in /proc/PID/stat) has stopped.
        static func isZombie(_ pid: pid_t) -> Bool {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the running mailer's workers: pids, generation, restarts, uptime.")
        @OptionGroup var options: ConfigOptions
        @Flag(help: "Print the status as JSON.") var json = false

        func run() throws {
            let loaded = try self.options.load()
            let files = ControlFiles(dataDir: loaded.config.dataDir)
            guard let pid = files.runningPID(), let status = files.readStatus() else {
                print("mailer is not running (data directory \(loaded.config.dataDir))")
                throw ExitCode(3)
            }
            if self.json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(status), as: UTF8.self))
                return
            }
            let now = Date().timeIntervalSince1970
            print("mailer running: supervisor pid \(pid), generation \(status.generation), up \(Self.duration(now - status.startedAt))"
                + (status.paused ? ", deliveries paused" : ""))
            func pad(_ text: String, _ width: Int) -> String {
                text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
            }
            print(pad("ROLE", 11) + pad("PID", 9) + pad("GEN", 5) + pad("STATE", 13) + pad("RESTARTS", 10) + "UPTIME")
            for worker in status.workers {
                let uptime = worker.startedAt > 0 ? Self.duration(now - worker.startedAt) : "-"
                print(pad(worker.role, 11) + pad(String(worker.pid), 9) + pad(String(worker.generation), 5)
                    + pad(worker.state, 13) + pad(String(worker.restarts), 10) + uptime)
            }
        }

        static func duration(_ seconds: Double) -> String {
            let s = Int(seconds)
            if s < 60 { return "\(s)s" }
            if s < 3600 { return "\(s / 60)m\(s % 60)s" }
            return "\(s / 3600)h\((s % 3600) / 60)m"
        }
    }
}
