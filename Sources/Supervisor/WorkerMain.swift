import Forwarder
import IPC
import Monitor
import Receiver

/// Dispatches the hidden `mailer worker <role>` to the role's entry point.
enum WorkerMain {
    static func run(role: WorkerRole, configPath: String?) throws -> Never {
        switch role {
        case .receiver: try ReceiverWorker.run(configPath: configPath)
        case .forwarder: try ForwarderWorker.run(configPath: configPath)
        case .monitor: try MonitorWorker.run(configPath: configPath)
        }
    }
}
