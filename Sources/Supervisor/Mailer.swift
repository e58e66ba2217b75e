import ArgumentParser
import Foundation
import IPC
import Receiver

/// The `mailer` command: the supervisor (`serve`, also the default as the original is started with
/// `mailer -config config.json`), configuration checks, control of a running instance, and the
/// hidden `worker` subcommand the supervisor execs for each worker process.
@main
struct Mailer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailer",
        abstract: "A hardened, send-only mail relay.",
        subcommands: [Serve.self, CheckConfig.self, Reload.self, Stop.self, Status.self, Worker.self],
        defaultSubcommand: Serve.self)
}

/// `-config PATH` (the Go spelling) and `--config PATH`.
struct ConfigOptions: ParsableArguments {
    @Option(name: [.customLong("config"), .customLong("config", withSingleDash: true)],
            help: "Path of config.json (built-in defaults when absent).")
    var config: String?

    /// The path made absolute, so workers and later commands read the same file.
    var absolutePath: String? {
        self.config.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
    }

    /// Loads and validates the configuration; with `checkingFiles`, the files it names must load
    /// too (what a worker would fail on). A bad one is reported on stderr: exit 78 (EX_CONFIG).
    func load(checkingFiles: Bool = false) throws -> ConfigLoader.Result {
        do {
            let loaded = try ConfigLoader.load(path: self.absolutePath)
            if checkingFiles { try ReceiverWorker.checkFiles(loaded.config) }
            return loaded
        } catch let error as ConfigError {
            FileHandle.standardError.write(Data("mailer: \(error)\n".utf8))
            throw ExitCode(78)  // EX_CONFIG
        }
    }
}

extension Mailer {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the relay: bind the ports, start and supervise the receiver, forwarder and monitor.")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let loaded = try self.options.load(checkingFiles: true)
            do {
                let supervisor = try Supervisor(configPath: self.options.absolutePath, loaded: loaded)
                try supervisor.run()
            } catch let error as Supervisor.ExitCodeError {
                throw ExitCode(error.code)
            }
        }
    }

    struct CheckConfig: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-config", abstract: "Check a configuration file without starting anything.")
        @OptionGroup var options: ConfigOptions

        func run() throws {
            let loaded = try self.options.load(checkingFiles: true)
            for warning in loaded.warnings { print("warning: \(warning)") }
            let c = loaded.config
            print("configuration ok: listen \(c.smtpHost):\(c.smtpPort), data \(c.dataDir), "
                + (c.localMode ? "local mode (mail stored under \(c.dataDir)/local)"
                    : "\(c.orderedProviders.count) provider(s)\(c.directDelivery.enabled ? " + direct delivery" : "")"))
        }
    }

    struct Worker: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one worker process (started by the supervisor).", shouldDisplay: false)
        @Argument var role: String
        @OptionGroup var options: ConfigOptions

        func run() throws {
            guard let role = WorkerRole(rawValue: self.role) else {
                throw ValidationError("unknown worker role \(self.role)")
            }
            try WorkerMain.run(role: role, configPath: self.options.absolutePath)
        }
    }
}
