import Foundation
import IPC

/// The latest `MonitorSnapshot` the supervisor sent, and when it arrived. Written by the pipe-reader
/// thread, read by the request threads.
final class MonitorSnapshotStore: @unchecked Sendable {
    /// A snapshot with the time the monitor received it.
    struct Received: Sendable {
        var snapshot: MonitorSnapshot
        var receivedAt: Date
    }

    private let lock = NSLock()
    private var current: Received?

    init(_ initial: Received? = nil) { self.current = initial }

    /// Decodes and keeps a snapshot; returns false (and keeps the previous one) when it does not decode.
    @discardableResult
    func update(json: String, at now: Date = Date()) -> Bool {
        guard let snapshot = try? JSONDecoder().decode(MonitorSnapshot.self, from: Data(json.utf8)) else {
            return false
        }
        self.update(snapshot, at: now)
        return true
    }

    func update(_ snapshot: MonitorSnapshot, at now: Date = Date()) {
        self.lock.lock()
        defer { self.lock.unlock() }
        self.current = Received(snapshot: snapshot, receivedAt: now)
    }

    var latest: Received? {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.current
    }
}
