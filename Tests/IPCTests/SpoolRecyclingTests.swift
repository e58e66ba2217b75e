import Foundation
import NIOCore
import Testing

@testable import IPC

/// Delivered files are kept in `queue/free/` and overwritten by later messages instead of being
/// unlinked and created again; what that may and may not reuse.
@Suite struct SpoolRecyclingTests {
    typealias TemporarySpool = SpoolTests.TemporarySpool

    /// Delivers a message `size` bytes long, so that its file lands in `free/`.
    static func deliver(_ t: TemporarySpool, size: Int) throws -> String {
        let envelope = try t.enqueue("Subject: long\r\n\r\n" + String(repeating: "x", count: size) + "\r\n")
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        t.spool.finishDelivered(claim)
        return envelope.id
    }

    static func freeNames(_ t: TemporarySpool) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: t.spool.recycleDirectory)) ?? []).sorted()
    }

    static func inode(_ path: String) -> ino_t? {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_ino : nil
    }

    /// The spool does not look at an empty `free/` again for 50 ms.
    static func waitForRescan() { usleep(60_000) }

    @Test func aDeliveredFileIsKeptForReuseNotUnlinked() throws {
        let t = try TemporarySpool()
        let id = try Self.deliver(t, size: 100)
        #expect(t.names(.active).isEmpty)
        #expect(!t.exists(.new, id))
        #expect(Self.freeNames(t).count == 1)
    }

    @Test func aShorterMessageInARecycledFileIsExactlyItself() throws {
        let t = try TemporarySpool()
        _ = try Self.deliver(t, size: 50_000)
        let inode = try #require(Self.inode((t.spool.recycleDirectory as NSString).appendingPathComponent(Self.freeNames(t)[0])))
        Self.waitForRescan()
        let envelope = try t.enqueue(SpoolTests.message)
        #expect(Self.freeNames(t).isEmpty, "the free file was taken")
        let path = t.spool.path(.new, envelope.id)
        #expect(Self.inode(path) == inode)
        #expect(try t.spool.envelope(of: envelope.id, in: .new) == envelope)
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(SpoolTests.message.utf8))
        #expect(t.names(.tmp).isEmpty)
    }

    /// A longer message extends the file (no truncate), one of the same length overwrites it.
    @Test(arguments: [10, 0])
    func aLongerOrEqualMessageInARecycledFileIsExactlyItself(shorterBy: Int) throws {
        let t = try TemporarySpool()
        let text = "Subject: long\r\n\r\n" + String(repeating: "y", count: 3000) + "\r\n"
        _ = try Self.deliver(t, size: 3000 - shorterBy)
        Self.waitForRescan()
        let envelope = try t.enqueue(text)
        #expect(Self.freeNames(t).isEmpty, "the free file was taken")
        #expect(try t.spool.envelope(of: envelope.id, in: .new) == envelope)
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(text.utf8))
    }

    @Test func freeNeverHoldsMoreThanTheSlots() throws {
        let t = try TemporarySpool()
        for _ in 0..<(Spool.recycleSlots + 20) {
            let envelope = t.envelope()
            try t.spool.enqueue(envelope, parts: [ByteBuffer(string: "Subject: s\r\n\r\nx\r\n")])
            t.spool.finishDelivered(try #require(t.spool.claim(envelope.id, from: .new)))
        }
        #expect(Self.freeNames(t).count <= Spool.recycleSlots)
        #expect(t.names(.new).isEmpty && t.names(.active).isEmpty && t.names(.tmp).isEmpty)
    }

    @Test func aSymbolicLinkInFreeIsNeverWrittenThrough() throws {
        let t = try TemporarySpool()
        let victim = (t.root as NSString).appendingPathComponent("victim")
        #expect(FileManager.default.createFile(atPath: victim, contents: Data("untouched\n".utf8)))
        try FileManager.default.createSymbolicLink(
            atPath: (t.spool.recycleDirectory as NSString).appendingPathComponent("r1"), withDestinationPath: victim)
        let envelope = try t.enqueue()
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "untouched\n")
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(SpoolTests.message.utf8))
        #expect(t.names(.tmp).isEmpty, "the link taken from free/ is removed, not left in tmp/")
        #expect(Self.freeNames(t).isEmpty)
    }

    @Test func aFileWithASecondLinkInFreeIsNotReused() throws {
        let t = try TemporarySpool()
        let outside = (t.root as NSString).appendingPathComponent("outside")
        #expect(FileManager.default.createFile(atPath: outside, contents: Data("kept\n".utf8)))
        try FileManager.default.linkItem(
            atPath: outside, toPath: (t.spool.recycleDirectory as NSString).appendingPathComponent("r2"))
        let envelope = try t.enqueue()
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "kept\n")
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(SpoolTests.message.utf8))
    }

    @Test func writeAllKeepsTheOrderOfMoreBuffersThanOneWritevTakes() throws {
        let t = try TemporarySpool()
        let path = (t.root as NSString).appendingPathComponent("vectored")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #expect(fd >= 0)
        let chunks = (0..<3000).map { Array("\($0),".utf8) }
        let written = try chunks.withNestedBuffers { try SpoolFile.writeAll(fd: fd, $0, path: path) }
        close(fd)
        let expected = chunks.flatMap { $0 }
        #expect(written == expected.count)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: path))) == expected)
    }
}

extension Array where Element == [UInt8] {
    /// Calls `body` with a pointer to every element's bytes (all valid for the call).
    fileprivate func withNestedBuffers<R>(_ body: ([UnsafeRawBufferPointer]) throws -> R) rethrows -> R {
        let joined = self.flatMap { $0 }
        return try joined.withUnsafeBytes { all in
            var offset = 0
            let pieces = self.map { chunk -> UnsafeRawBufferPointer in
                defer { offset += chunk.count }
                return UnsafeRawBufferPointer(rebasing: all[offset..<offset + chunk.count])
            }
            return try body(pieces)
        }
    }
}
