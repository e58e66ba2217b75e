import Foundation
import Testing

@testable import IPC

/// One directory fsync shared by every caller waiting at the time.
@Suite struct GroupSyncTests {
    @Test func concurrentCallersAllReturn() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mailer-sync-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let sync = try GroupSync(directory: directory)
        let group = DispatchGroup()
        let failures = LockedCounter()
        let threads = 16
        let callsPerThread = 25
        for _ in 0..<threads {
            group.enter()
            let thread = Thread {
                for _ in 0..<callsPerThread {
                    do { try sync.sync() } catch { failures.increment() }
                }
                group.leave()
            }
            thread.start()
        }
        #expect(group.wait(timeout: .now() + 30) == .success, "every sync() returns")
        #expect(failures.value == 0)
    }

    @Test func aMissingDirectoryIsAnError() {
        #expect(throws: SpoolError.self) { _ = try GroupSync(directory: "/nonexistent/mailer/dir") }
    }

    final class LockedCounter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        func increment() { self.lock.withLock { self.count += 1 } }
        var value: Int { self.lock.withLock { self.count } }
    }
}
