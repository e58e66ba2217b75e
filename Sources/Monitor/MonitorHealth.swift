import Foundation
import IPC

/// The verdict of `/health`: `ok`, `degraded` (serving, but someone should look) or `error` (mail is not
/// being accepted: the answer is 503 so that `curl -f` fails), with the reasons.
struct MonitorHealth: Equatable {
    enum Status: String, Comparable {
        case ok, degraded, error

        private var rank: Int { self == .ok ? 0 : self == .degraded ? 1 : 2 }
        static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }
    }

    var status: Status = .ok
    /// Why the status is not `ok`, one short sentence each.
    var problems: [String] = []

    private mutating func flag(_ status: Status, _ problem: String) {
        self.status = max(self.status, status)
        self.problems.append(problem)
    }

    /// The whole rule, in one place.
    static func evaluate(snapshot: MonitorSnapshotStore.Received?, spool: MonitorSpoolFacts, now: Date) -> MonitorHealth {
        var health = MonitorHealth()
        if let received = snapshot {
            let age = now.timeIntervalSince(received.receivedAt)
            if age > MonitorThresholds.staleSnapshot {
                health.flag(.error, "no word from the supervisor for \(Int(age)) s")
            }
            let snapshot = received.snapshot
            if !snapshot.workers.contains(where: { $0.role == WorkerRole.receiver.rawValue && $0.state == "running" }) {
                health.flag(.error, "no receiver is running")
            }
            for worker in snapshot.workers where worker.state == "crash-loop" {
                health.flag(.degraded, "\(worker.role) is crash-looping")
            }
            for series in snapshot.gauges where series.name == MonitorMetricNames.circuitOpen && series.value > 0 {
                let provider = MonitorLabels.parse(series.labels).first { $0.0 == "provider" }?.1 ?? series.labels
                health.flag(.degraded, "provider \(provider) is skipped (circuit open)")
            }
        } else {
            health.flag(.degraded, "no snapshot from the supervisor yet")
        }
        if !spool.writable {
            health.flag(.error, "the spool is not writable")
        }
        if let free = spool.diskFreeBytes, free < MonitorThresholds.lowDiskBytes {
            health.flag(.degraded, "low disk space: \(free / 1_048_576) MB free")
        }
        if spool.failed > MonitorThresholds.failedBacklog {
            health.flag(.degraded, "\(spool.failed) messages in failed/")
        }
        if let age = spool.oldestQueuedAge, age > MonitorThresholds.oldestQueuedAge {
            health.flag(.degraded, "the oldest queued message waits for \(Int(age)) s")
        }
        return health
    }
}
