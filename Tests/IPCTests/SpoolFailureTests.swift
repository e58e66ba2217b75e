import Foundation
import NIOCore
import Testing

@testable import IPC

/// What a commit leaves behind when the disk reports an error at the flushes "250 only after fsync"
/// rests on: never a message in `new/` that the client was not told about, never a half file.
@Suite struct SpoolFailureTests {
    /// A spool in a fresh directory whose file or directory flushes fail with EIO.
    final class FailingSpool {
        let root: String
        let spool: Spool

        init(failFile: Bool = false, failDirectory: Bool = false) throws {
            self.root = FileManager.default.temporaryDirectory
                .appendingPathComponent("mailer-spool-failing-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
            let flush = Spool.Flush(
                file: { fd in failFile ? Self.eio() : fsync(fd) },
                directory: { fd in failDirectory ? Self.eio() : fsync(fd) })
            self.spool = Spool(dataDir: (self.root as NSString).appendingPathComponent("emails"), flush: flush)
            try self.spool.createDirectories()
        }

        deinit { try? FileManager.default.removeItem(atPath: self.root) }

        static func eio() -> Int32 {
            errno = EIO
            return -1
        }

        func enqueue() throws -> Envelope {
            let envelope = Envelope(id: QueueID.make(), sender: "a@example.com", recipients: ["b@example.net"],
                                    receivedAt: 1_700_000_000, client: "127.0.0.1:1", helo: "client")
            try self.spool.enqueue(envelope, parts: [ByteBuffer(string: "Subject: s\r\n\r\nbody\r\n")])
            return envelope
        }
    }

    @Test func aFailedFileFlushLeavesNoMessage() throws {
        let t = try FailingSpool(failFile: true)
        do {
            _ = try t.enqueue()
            Issue.record("the commit succeeded although fsync failed")
        } catch let error as SpoolError {
            #expect("\(error)".contains("fsync"))
        }
        #expect(t.spool.names(in: .new).isEmpty)
        #expect(t.spool.names(in: .tmp).isEmpty)
    }

    @Test func aFailedDirectoryFlushTakesTheMessageBackOut() throws {
        let t = try FailingSpool(failDirectory: true)
        #expect(throws: SpoolError.self) { _ = try t.enqueue() }
        // The entry in new/ may not be on disk: the client gets a 4xx, so the file must not be
        // delivered either (it would be a message nobody was told was accepted).
        #expect(t.spool.names(in: .new).isEmpty)
        #expect(t.spool.names(in: .tmp).isEmpty)
    }

    @Test func aFailedFlushDuringRetryKeepsTheFailedCopy() throws {
        let good = try SpoolTests.TemporarySpool()
        let envelope = try good.enqueue()
        var failed = envelope
        failed.recipients[0].state = .failed
        try good.spool.finishFailed(try #require(good.spool.claim(envelope.id, from: .new)), envelope: failed)
        let failing = Spool(dataDir: good.spool.dataDir, flush: .init(file: { fd in fsync(fd) },
                                                                      directory: { _ in FailingSpool.eio() }))
        #expect(throws: SpoolError.self) { try failing.move(envelope.id, from: .failed, to: .new) }
        // Not lost: the failed copy stays until the new one is known to be on disk.
        #expect(good.spool.names(in: .failed) == [envelope.id])
    }

    /// A new message needs its data and length on disk (`fdatasync`); a deferred rewrite also its
    /// mtime, the time of the next attempt (`fsync`).
    @Test func aCommitFlushesDataAndADeferralAlsoTheTimes() throws {
        final class Calls: @unchecked Sendable {
            let lock = NSLock()
            var kinds: [String] = []
            func record(_ kind: String, _ fd: Int32) -> Int32 {
                self.lock.withLock { self.kinds.append(kind) }
                return fsync(fd)
            }
        }
        let calls = Calls()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("mailer-spool-flush-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spool = Spool(dataDir: (root as NSString).appendingPathComponent("emails"), flush: Spool.Flush(
            file: { calls.record("file", $0) }, fileData: { calls.record("data", $0) },
            directory: { calls.record("dir", $0) }))
        try spool.createDirectories()
        let envelope = Envelope(id: QueueID.make(), sender: "a@example.com", recipients: ["b@example.net"],
                                receivedAt: 1_700_000_000, client: "127.0.0.1:1", helo: "client")
        try spool.enqueue(envelope, parts: [ByteBuffer(string: "Subject: s\r\n\r\nbody\r\n")])
        #expect(calls.kinds == ["data", "dir"])
        calls.kinds = []
        let claim = try #require(spool.claim(envelope.id, from: .new))
        try spool.finishDeferred(claim, envelope: claim.envelope, until: Date(timeIntervalSinceNow: 60))
        #expect(calls.kinds == ["file", "dir"])
    }
}
