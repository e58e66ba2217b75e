import Foundation
import IPC
import Logging
import NIOHTTP1

@testable import Monitor

/// A router over a spool in a temporary directory, with a fixed clock, fake disk and writability
/// probes, and recorded actions.
final class MonitorFixture: @unchecked Sendable {
    let root: String
    let spool: Spool
    let snapshots = MonitorSnapshotStore()
    var config = MailerConfig()
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var diskFree: UInt64? = 50 * 1024 * 1024 * 1024
    var writable = true
    var relayWorks = true
    private let lock = NSLock()
    private var _relayed: [String] = []
    private var _wakes = 0

    var relayed: [String] { self.lock.withLock { self._relayed } }
    var wakes: Int { self.lock.withLock { self._wakes } }

    init() throws {
        self.root = NSTemporaryDirectory() + "monitor-tests-\(UUID().uuidString)"
        self.config.dataDir = self.root + "/emails"
        self.spool = Spool(dataDir: self.config.dataDir)
        try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
        try self.spool.createDirectories()
    }

    deinit { try? FileManager.default.removeItem(atPath: self.root) }

    var router: MonitorRouter {
        let now = self.now
        let probes = MonitorProbes(now: { now }, diskFreeBytes: { [self] _ in self.diskFree },
                                   spoolWritable: { [self] _ in self.writable })
        let actions = MonitorActions(
            relay: { [self] action in
                self.lock.withLock { self._relayed.append(action) }
                return self.relayWorks
            },
            wakeForwarders: { [self] in self.lock.withLock { self._wakes += 1 } })
        var logger = Logger(label: "monitor-tests")
        logger.logLevel = .critical
        return MonitorRouter(config: self.config, spool: self.spool, snapshots: self.snapshots, probes: probes,
                             actions: actions, logger: logger)
    }

    /// A healthy snapshot: every worker running, received just now.
    func healthySnapshot(_ edit: (inout MonitorSnapshot) -> Void = { _ in }) {
        var snapshot = MonitorSnapshot()
        snapshot.generation = 1
        snapshot.startedAt = self.now.timeIntervalSince1970 - 100
        snapshot.workers = ["receiver", "forwarder", "monitor"].enumerated().map { index, role in
            MonitorSnapshot.Worker(role: role, pid: Int32(100 + index), generation: 1, state: "running", restarts: 0,
                                   startedAt: self.now.timeIntervalSince1970 - 100, lastExit: nil)
        }
        edit(&snapshot)
        self.snapshots.update(snapshot, at: self.now.addingTimeInterval(-0.5))
    }

    /// Puts a message in `state` and returns its id.
    @discardableResult
    func message(in state: Spool.State, receivedAgo age: Double = 10, recipients: [String] = ["b@example.org"],
                 failedRecipients: Bool = false, lastError: String? = nil) throws -> String {
        let id = QueueID.make(now: self.now.addingTimeInterval(-age))
        var envelope = Envelope(id: id, sender: "a@example.org", recipients: recipients,
                                receivedAt: self.now.timeIntervalSince1970 - age, client: "127.0.0.1:4000",
                                helo: "client.test", size: 123)
        if failedRecipients {
            for index in envelope.recipients.indices { envelope.recipients[index].state = .failed }
            envelope.attempts = 3
        }
        envelope.lastError = lastError
        try self.spool.enqueue(envelope, parts: [])
        if state != .new { try self.spool.move(id, from: .new, to: state == .active ? .hold : state) }
        if state == .active {
            // Nothing but a forwarder claims; a rename stands in for the claim.
            rename(self.spool.path(.hold, id), self.spool.path(.active, id))
        }
        return id
    }

    func setModificationTime(_ path: String, ago seconds: Double) throws {
        try FileManager.default.setAttributes([.modificationDate: self.now.addingTimeInterval(-seconds)],
                                              ofItemAtPath: path)
    }

    func respond(_ method: HTTPMethod, _ uri: String, headers: [(String, String)] = [], body: String = "",
                 client: String? = "127.0.0.1") -> MonitorResponse {
        self.router.respond(to: MonitorRequest(method: method, uri: uri, headers: HTTPHeaders(headers),
                                               clientAddress: client, body: Array(body.utf8)))
    }
}

extension MonitorResponse {
    /// The body parsed as a JSON object.
    var object: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(self.body.utf8))) as? [String: Any] ?? [:]
    }
}
