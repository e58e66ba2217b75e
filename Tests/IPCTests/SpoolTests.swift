import Foundation
import NIOCore
import Testing

@testable import IPC

/// The maildir spool: what lands where, and what each crash point leaves behind.
@Suite struct SpoolTests {
    /// A spool in a fresh temporary directory, removed when the test ends.
    final class TemporarySpool {
        let root: String
        let spool: Spool

        init(create: Bool = true) throws {
            let name = "mailer-spool-\(UUID().uuidString)"
            self.root = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
            try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true)
            self.spool = Spool(dataDir: (self.root as NSString).appendingPathComponent("emails"))
            if create { try self.spool.createDirectories() }
        }

        deinit { try? FileManager.default.removeItem(atPath: self.root) }

        func envelope(_ recipients: [String] = ["bob@example.com", "carol@example.com"]) -> Envelope {
            Envelope(id: QueueID.make(), sender: "alice@example.com", recipients: recipients,
                     receivedAt: 1_700_000_000.5, client: "127.0.0.1:40000", helo: "client.example",
                     authIdentity: "alice", smtputf8: false, eightBit: true, size: 42)
        }

        /// Enqueues a message with `message` as its content, in two parts as the receiver writes it.
        @discardableResult
        func enqueue(_ message: String = "Received: x\r\nSubject: hi\r\n\r\nHello\r\n") throws -> Envelope {
            let envelope = self.envelope()
            let split = message.index(message.startIndex, offsetBy: min(12, message.count))
            try self.spool.enqueue(envelope, parts: [ByteBuffer(string: String(message[..<split])),
                                                     ByteBuffer(string: String(message[split...]))])
            return envelope
        }

        func names(_ state: Spool.State) -> [String] { self.spool.names(in: state) }

        func exists(_ state: Spool.State, _ id: String) -> Bool {
            FileManager.default.fileExists(atPath: self.spool.path(state, id))
        }
    }

    /// A pid no process can have: the kernel hands out pids below `pid_max`.
    static func deadPid() -> pid_t {
        let text = (try? String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)) ?? "4194304"
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 4_194_304
    }

    static let message = "Received: x\r\nSubject: hi\r\n\r\nHello\r\n"

    // MARK: - Receiving

    @Test func createDirectoriesMakesEveryState() throws {
        let t = try TemporarySpool()
        for state in Spool.State.allCases {
            var isDirectory: ObjCBool = false
            #expect(FileManager.default.fileExists(atPath: t.spool.directory(state), isDirectory: &isDirectory))
            #expect(isDirectory.boolValue)
        }
        #expect(t.spool.directory(.failed).hasSuffix("emails/failed"))
        #expect(t.spool.directory(.new).hasSuffix("emails/queue/new"))
        try t.spool.createDirectories()  // again: nothing changes
    }

    @Test func enqueueLeavesAWholeFileInNew() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        #expect(t.names(.new) == [envelope.id])
        #expect(t.names(.tmp).isEmpty)
        #expect(try t.spool.envelope(of: envelope.id, in: .new) == envelope)
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(Self.message.utf8))
        let raw = try #require(FileManager.default.contents(atPath: t.spool.path(.new, envelope.id)))
        #expect(String(decoding: raw.prefix(15), as: UTF8.self) == "MAILER-SPOOL 1 ")
        #expect(t.spool.locate(envelope.id) == .new)
    }

    @Test func enqueuedMessagesAreListedInIdOrder() throws {
        let t = try TemporarySpool()
        let ids = try (0..<5).map { _ in try t.enqueue().id }
        #expect(t.names(.new) == ids.sorted())
        #expect(t.spool.claimable().map(\.id) == ids.sorted())
        #expect(t.spool.count(.new) == 5)
    }

    @Test func enqueueWithoutTmpFailsAndLeavesNothing() throws {
        let t = try TemporarySpool()
        try FileManager.default.removeItem(atPath: t.spool.directory(.tmp))
        #expect(throws: SpoolError.self) { try t.enqueue() }
        #expect(t.names(.new).isEmpty)
    }

    @Test func enqueueFailingAtTheRenameRemovesItsTemporaryFile() throws {
        let t = try TemporarySpool()
        try FileManager.default.removeItem(atPath: t.spool.directory(.new))
        #expect(throws: SpoolError.self) { try t.enqueue() }
        #expect(t.names(.tmp).isEmpty, "the half-committed file in tmp/ is removed")
        #expect(t.names(.new).isEmpty)
    }

    @Test func enqueueNeverReplacesAMessageWithTheSameID() throws {
        let t = try TemporarySpool()
        let first = try t.enqueue("Subject: first\r\n\r\none\r\n")
        #expect(throws: SpoolError.self) {
            try t.spool.enqueue(first, parts: [ByteBuffer(string: "Subject: second\r\n\r\ntwo\r\n")])
        }
        #expect(try t.spool.message(of: first.id, in: .new) == Array("Subject: first\r\n\r\none\r\n".utf8))
        #expect(t.names(.tmp).isEmpty)
    }

    @Test func enqueueIntoASpoolThatWasNeverCreatedFails() throws {
        let t = try TemporarySpool(create: false)
        #expect(throws: SpoolError.self) { try t.enqueue() }
        #expect(t.names(.new).isEmpty && t.names(.tmp).isEmpty)
    }

    @Test func enqueueErrorCarriesErrno() throws {
        let t = try TemporarySpool()
        try FileManager.default.removeItem(atPath: t.spool.directory(.tmp))
        do {
            try t.enqueue()
        } catch let error as SpoolError {
            #expect(error.errno == ENOENT)
            #expect(!error.isNoSpace)
            #expect(error.description.contains(t.spool.directory(.tmp)))
        }
        #expect(SpoolError("write", path: "/x", errno: ENOSPC).isNoSpace)
    }

    // MARK: - Crash points in tmp/

    @Test func abandonedTemporaryFilesOfDeadWritersAreRemoved() throws {
        let t = try TemporarySpool()
        let dead = t.spool.path(.tmp, "\(QueueID.make()).\(Self.deadPid())")
        let live = t.spool.path(.tmp, "\(QueueID.make()).\(getpid())")
        let nameless = t.spool.path(.tmp, "garbage")
        for path in [dead, live, nameless] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data("MAILER-SPOOL 1 ".utf8)))
        }
        #expect(t.spool.removeAbandonedTemporaryFiles() == 2)
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(!FileManager.default.fileExists(atPath: nameless))
        #expect(FileManager.default.fileExists(atPath: live), "a running writer's file is kept")
        #expect(t.names(.new).isEmpty, "an abandoned file never becomes a message")
        #expect(t.spool.removeAbandonedTemporaryFiles() == 0)
    }

    // MARK: - Claiming

    @Test func claimMovesToActiveAndHoldsALock() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        var first = t.spool.claim(envelope.id, from: .new)
        #expect(first != nil)
        #expect(first?.envelope == envelope)
        #expect(try first?.readMessage() == Array(Self.message.utf8))
        #expect(t.names(.new).isEmpty)
        #expect(t.names(.active) == [envelope.id])
        // While the first claim lives, nobody else gets it: not from new/ (gone), not from active/ (locked).
        #expect(t.spool.claim(envelope.id, from: .new) == nil)
        #expect(t.spool.claim(envelope.id, from: .active) == nil)
        #expect(t.names(.active) == [envelope.id], "a failed claim leaves the file alone")
        // The holder dies without finishing: the lock goes with it and active/ is claimable again.
        first = nil
        #expect(t.spool.claimable().map(\.id) == [envelope.id])
        #expect(t.spool.claimable().first?.state == .active)
        let second = t.spool.claim(envelope.id, from: .active)
        #expect(second?.envelope == envelope)
        #expect(try second?.readMessage() == Array(Self.message.utf8))
    }

    @Test func claimOfAMissingMessageFails() throws {
        let t = try TemporarySpool()
        #expect(t.spool.claim(QueueID.make(), from: .new) == nil)
    }

    @Test func finishDeliveredRemovesTheMessage() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue()
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        t.spool.finishDelivered(claim)
        #expect(t.spool.locate(envelope.id) == nil)
        #expect(t.spool.claimable().isEmpty)
    }

    @Test func unclaimGivesItBackToNew() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue()
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        t.spool.unclaim(claim)
        #expect(t.names(.new) == [envelope.id])
        #expect(t.names(.active).isEmpty)
        #expect(t.spool.claim(envelope.id, from: .new) != nil)
    }

    @Test func finishDeferredWaitsUntilItIsDue() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        var updated = envelope
        updated.attempts = 1
        updated.recipients[0].state = .delivered
        updated.recipients[1].reply = "451 4.3.0 try later"
        updated.lastError = "451 4.3.0 try later"
        let due = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 + 3600).rounded(.down))
        updated.nextAttemptAt = due.timeIntervalSince1970
        try t.spool.finishDeferred(claim, envelope: updated, until: due)
        #expect(t.names(.deferred) == [envelope.id])
        #expect(t.names(.active).isEmpty)
        #expect(t.names(.tmp).isEmpty)
        // mtime is the next attempt.
        let attributes = try FileManager.default.attributesOfItem(atPath: t.spool.path(.deferred, envelope.id))
        #expect((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 == due.timeIntervalSince1970)
        #expect(t.spool.claimable(now: Date()).isEmpty)
        #expect(t.spool.claimable(now: due.addingTimeInterval(-1)).isEmpty)
        #expect(t.spool.claimable(now: due).map(\.id) == [envelope.id])
        #expect(t.spool.claimable(now: due).first?.state == .deferred)
        // Claimed again once due: the new envelope and the same message.
        let again = try #require(t.spool.claim(envelope.id, from: .deferred))
        #expect(again.envelope == updated)
        #expect(again.envelope.pendingRecipients == ["carol@example.com"])
        #expect(try again.readMessage() == Array(Self.message.utf8))
    }

    @Test func finishFailedKeepsEnvelopeAndMessage() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        var updated = envelope
        updated.recipients[0].state = .delivered
        updated.recipients[1].state = .failed
        updated.recipients[1].reply = "550 5.1.1 no such user"
        updated.attempts = 1
        updated.history = [.init(at: 1_700_000_100, route: "smtp.example:587", recipients: ["carol@example.com"],
                                 reply: "550 5.1.1 no such user", durationMs: 120)]
        try t.spool.finishFailed(claim, envelope: updated)
        #expect(t.names(.failed) == [envelope.id])
        #expect(t.names(.active).isEmpty)
        #expect(t.spool.claimable().isEmpty)
        #expect(try t.spool.envelope(of: envelope.id, in: .failed) == updated)
        #expect(try t.spool.message(of: envelope.id, in: .failed) == Array(Self.message.utf8))
        #expect(t.spool.locate(envelope.id) == .failed)
    }

    @Test func movingFromFailedToNewMakesFailedRecipientsPendingAgain() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        var updated = envelope
        updated.recipients[0].state = .delivered
        updated.recipients[1].state = .failed
        updated.nextAttemptAt = 123
        updated.attempts = 7
        try t.spool.finishFailed(claim, envelope: updated)
        let before = Date().timeIntervalSince1970
        try t.spool.move(envelope.id, from: .failed, to: .new)
        #expect(t.names(.failed).isEmpty)
        #expect(t.names(.tmp).isEmpty)
        #expect(t.names(.new) == [envelope.id])
        let moved = try t.spool.envelope(of: envelope.id, in: .new)
        #expect(moved.recipients.map(\.state) == [.delivered, .pending])
        #expect(moved.pendingRecipients == ["carol@example.com"])
        #expect(moved.nextAttemptAt == nil)
        #expect(moved.receivedAt >= before, "the queue lifetime starts over")
        #expect(moved.attempts == 0, "and so does the backoff")
        #expect(try t.spool.message(of: envelope.id, in: .new) == Array(Self.message.utf8))
    }

    @Test func aFailedMoveLeavesTheMessageWhereItWasAndNothingInTmp() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue(Self.message)
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        try t.spool.finishFailed(claim, envelope: envelope)
        try FileManager.default.removeItem(atPath: t.spool.directory(.new))
        #expect(throws: SpoolError.self) { try t.spool.move(envelope.id, from: .failed, to: .new) }
        #expect(t.names(.failed) == [envelope.id])
        #expect(t.names(.tmp).isEmpty, "the rewritten copy is removed")
        #expect(try t.spool.message(of: envelope.id, in: .failed) == Array(Self.message.utf8))
    }

    @Test func holdAndRelease() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue()
        try t.spool.move(envelope.id, from: .new, to: .hold)
        #expect(t.spool.claimable().isEmpty)
        #expect(t.spool.locate(envelope.id) == .hold)
        try t.spool.move(envelope.id, from: .hold, to: .new)
        #expect(t.spool.claimable().map(\.id) == [envelope.id])
        #expect(try t.spool.envelope(of: envelope.id, in: .new) == envelope)
        try t.spool.remove(envelope.id, from: .new)
        #expect(t.spool.locate(envelope.id) == nil)
    }

    @Test func staleActiveCopyNextToADeferredOneIsRemovedOnClaim() throws {
        let t = try TemporarySpool()
        let envelope = try t.enqueue()
        let claim = try #require(t.spool.claim(envelope.id, from: .new))
        try t.spool.finishDeferred(claim, envelope: envelope, until: Date().addingTimeInterval(600))
        // A crash after the rename into deferred/ and before the unlink in active/ leaves both.
        try FileManager.default.copyItem(atPath: t.spool.path(.deferred, envelope.id),
                                         toPath: t.spool.path(.active, envelope.id))
        #expect(t.spool.claimable().map(\.state) == [.active])
        #expect(t.spool.claim(envelope.id, from: .active) == nil)
        #expect(t.names(.active).isEmpty)
        #expect(t.names(.deferred) == [envelope.id], "the newer copy is the one kept")
    }

    @Test func unreadableFileIsMovedToFailedNotDelivered() throws {
        let t = try TemporarySpool()
        let id = QueueID.make()
        #expect(FileManager.default.createFile(atPath: t.spool.path(.new, id), contents: Data("garbage\n".utf8)))
        #expect(t.spool.claim(id, from: .new) == nil)
        #expect(t.names(.failed) == [id])
        #expect(t.names(.active).isEmpty)
    }

    @Test func claimableIgnoresNamesThatAreNotIds() throws {
        let t = try TemporarySpool()
        #expect(FileManager.default.createFile(atPath: t.spool.path(.new, ".hidden"), contents: Data()))
        #expect(FileManager.default.createFile(atPath: t.spool.path(.active, "README"), contents: Data()))
        #expect(t.spool.claimable().isEmpty)
        #expect(t.spool.locate("../../etc/passwd") == nil)
    }
}

@Suite struct SpoolClaimableTests {
    @Test func newOnlyListsNewAlone() throws {
        let dir = NSTemporaryDirectory() + "spool-newonly-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = Spool(dataDir: dir)
        try spool.createDirectories()
        let fresh = Envelope(id: QueueID.make(), sender: "a@x.test", recipients: ["b@y.test"], receivedAt: 0, client: "", helo: "")
        try spool.enqueue(fresh, parts: [ByteBuffer(string: "Subject: 1\r\n\r\nx\r\n")])
        let retry = Envelope(id: QueueID.make(), sender: "a@x.test", recipients: ["b@y.test"], receivedAt: 0, client: "", helo: "")
        try spool.enqueue(retry, parts: [ByteBuffer(string: "Subject: 2\r\n\r\nx\r\n")])
        let claim = try #require(spool.claim(retry.id, from: .new))
        try spool.finishDeferred(claim, envelope: retry, until: Date(timeIntervalSince1970: 1))
        #expect(spool.claimable(newOnly: true).map(\.id) == [fresh.id])
        #expect(Set(spool.claimable().map(\.id)) == [fresh.id, retry.id])
    }
}
