import Foundation
import IPC

public enum ForwarderWorker {
    public static func run(configPath: String?) throws -> Never {
        let context = try WorkerBootstrap.start(role: .forwarder, configPath: configPath)
        WorkerBootstrap.listenToSupervisor(context) { message in
            if case .supervisorPing = message { context.status?.send(.workerHeartbeat(pid: getpid())) }
            if case .supervisorDrain = message { exit(0) }
        }
        context.announceReady()
        while true { sleep(60) }
    }
}
