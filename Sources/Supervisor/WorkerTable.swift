import Foundation
import IPC

/// One row of the worker table (like Postfix's master.cf): which role, which inherited descriptors,
/// whether it runs at all, and how its restarts are throttled.
struct WorkerSpec {
    let role: WorkerRole
    /// Restart delay after the first quick failure; doubles per further one, up to `maxBackoff`.
    let initialBackoff: TimeInterval = 0.2
    let maxBackoff: TimeInterval = 30
    /// A worker that dies sooner than this after its start failed "quickly" (counts toward backoff).
    let quickFailure: TimeInterval = 10
    /// This many quick failures in a row is a crash loop (logged, shown in /health).
    let crashLoopThreshold = 5

    static func table(for config: MailerConfig) -> [WorkerSpec] {
        var specs = [WorkerSpec(role: .receiver), WorkerSpec(role: .forwarder)]
        if config.enableHealthCheck { specs.append(WorkerSpec(role: .monitor)) }
        return specs
    }
}

/// A started worker process as the supervisor sees it.
final class WorkerProcess {
    enum State: String {
        case starting, running, draining
    }

    let role: WorkerRole
    let pid: pid_t
    let generation: Int
    let control: PipeWriter
    let statusFD: Int32
    var decoder = PipeMessageDecoder(maximumFrame: PipeMessageDecoder.maximumWorkerFrame)
    var state: State = .starting
    let startedAt = Date()
    var lastHeartbeat = Date()
    var drainStartedAt: Date?
    /// Started in standby (a reload's receiver or monitor): accepts only after `supervisorServe`.
    var standby = false
    /// Said `workerStoppedAccepting` (while draining).
    var stoppedAccepting = false

    init(role: WorkerRole, pid: pid_t, generation: Int, controlFD: Int32, statusFD: Int32) {
        self.role = role
        self.pid = pid
        self.generation = generation
        self.control = PipeWriter(fd: controlFD, dropWhenFull: true)
        self.statusFD = statusFD
    }

    func closePipes() {
        close(self.control.fd)
        close(self.statusFD)
    }
}

/// Restart bookkeeping of one role: how often it was restarted and when it may start again.
struct RestartState {
    var restarts = 0
    var quickFailures = 0
    var nextStart: Date?
    var lastExit: String?

    mutating func recordExit(after lifetime: TimeInterval, spec: WorkerSpec, description: String) -> TimeInterval {
        self.restarts += 1
        self.lastExit = description
        if lifetime < spec.quickFailure { self.quickFailures += 1 } else { self.quickFailures = 0 }
        let delay = self.quickFailures == 0 ? 0
            : min(spec.maxBackoff, spec.initialBackoff * pow(2, Double(self.quickFailures - 1)))
        self.nextStart = Date().addingTimeInterval(delay)
        return delay
    }

    func crashLooping(_ spec: WorkerSpec) -> Bool { self.quickFailures >= spec.crashLoopThreshold }
}
