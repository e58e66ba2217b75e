import Foundation
import IPC

/// What the monitor reads from the spool and the file system for one answer: message counts per
/// state, the age of the oldest message waiting for delivery, free disk space and whether the spool
/// takes new files.
struct MonitorSpoolFacts: Sendable {
    var counts: [Spool.State: Int] = [:]
    /// Seconds since the oldest message in new/, active/ or deferred/ was received (or re-queued);
    /// nil when none waits. Held messages are left out: an operator put them there on purpose.
    var oldestQueuedAge: Double?
    /// Bytes available to the unprivileged user on the data directory's file system.
    var diskFreeBytes: UInt64?
    /// A probe file could be created and removed in `queue/tmp/`.
    var writable: Bool = true

    /// Messages waiting (new, active, deferred, hold).
    var queued: Int { Spool.State.queued.reduce(0) { $0 + (self.counts[$1] ?? 0) } }
    var failed: Int { self.counts[.failed] ?? 0 }
}

extension MonitorSpoolFacts {
    /// How many of the oldest ids get their envelope read to find the oldest message (see below).
    static let oldestCandidates = 16

    /// Reads the spool now.
    static func gather(spool: Spool, probes: MonitorProbes) -> MonitorSpoolFacts {
        var facts = MonitorSpoolFacts()
        var waiting: [(id: String, state: Spool.State)] = []
        for state in [Spool.State.new, .active, .deferred, .hold, .failed] {
            let names = spool.names(in: state).filter(QueueID.isValid)
            facts.counts[state] = names.count
            if state == .new || state == .active || state == .deferred {
                waiting += names.prefix(Self.oldestCandidates).map { (id: $0, state: state) }
            }
        }
        facts.oldestQueuedAge = Self.oldestAge(spool: spool, candidates: waiting, now: probes.now())
        facts.diskFreeBytes = probes.diskFreeBytes(spool.dataDir)
        facts.writable = probes.spoolWritable(spool)
        return facts
    }

    // XXX: the id gives the time a message was received, but a message re-queued from failed/ keeps
    // its id while its envelope's `receivedAt` starts over. So the envelopes of the few oldest ids are
    // read and the earliest `receivedAt` wins; a re-queued message younger by id than all of those
    // is not looked at (its age would be over-reported only if it were the oldest, which it is not).
    private static func oldestAge(spool: Spool, candidates: [(id: String, state: Spool.State)], now: Date) -> Double? {
        let sorted = candidates.sorted { $0.id < $1.id }.prefix(Self.oldestCandidates)
        var oldest: Double?
        for candidate in sorted {
            // A message that moved on while we looked (claimed, delivered) is skipped.
            guard let envelope = try? spool.envelope(of: candidate.id, in: candidate.state) else { continue }
            oldest = min(oldest ?? envelope.receivedAt, envelope.receivedAt)
        }
        return oldest.map { max(0, now.timeIntervalSince1970 - $0) }
    }
}
