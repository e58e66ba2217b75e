import Foundation
import IPC
import Logging
import NIOCore
import Testing

@testable import Forwarder
@testable import SMTPCore

/// Whole deliveries against a real spool in a temporary directory (no sockets): where the message
/// ends up, and what its envelope says.
@Suite struct ForwarderSpoolOutcomeTests {
    private final class Scripted: ForwarderTransport, @unchecked Sendable {
        let reply: (String) -> SMTPReply
        init(_ reply: @escaping (String) -> SMTPReply) { self.reply = reply }
        func send(_ transaction: SMTPClientTransaction, message: [UInt8], via hop: ForwarderHop) throws
            -> SMTPClientTransactionResult
        {
            let replies = transaction.recipients.map(self.reply)
            return SMTPClientTransactionResult(replies: replies, summary: replies.last!)
        }
    }

    private struct Rig {
        let dir: String
        let spool: Spool

        init() throws {
            self.dir = NSTemporaryDirectory() + "fwd-spool-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            self.spool = Spool(dataDir: self.dir)
            try self.spool.createDirectories()
        }

        func enqueue(_ recipients: [String], receivedAt: Date = Date()) throws -> String {
            let id = QueueID.make()
            let envelope = Envelope(id: id, sender: "a@x.test", recipients: recipients,
                                    receivedAt: receivedAt.timeIntervalSince1970, client: "127.0.0.1:1", helo: "c")
            try self.spool.enqueue(envelope, parts: [ByteBuffer(string: "Subject: t\r\n\r\nbody\r\n")])
            return id
        }

        func delivery(_ reply: @escaping (String) -> SMTPReply, lifetime: Int = 86400) -> ForwarderDelivery {
            ForwarderDelivery(
                spool: self.spool,
                mode: .route(ForwarderProviderRoute(hops: [ForwarderHop(name: "mx", host: "127.0.0.1", port: 25)]),
                             Scripted(reply)),
                breaker: ForwarderCircuitBreaker(threshold: 100, cooldown: 1),
                policy: ForwarderRetryPolicy(initialDelay: 60, maxDelay: 3600, maxLifetime: lifetime),
                batchSize: 20, batchDelay: 0, reporter: StatusReporter(writer: nil), logger: quietLogger)
        }

        func cleanup() { try? FileManager.default.removeItem(atPath: self.dir) }
    }

    @Test func deliveredMessageLeavesTheSpool() throws {
        let rig = try Rig()
        defer { rig.cleanup() }
        let id = try rig.enqueue(["a@y.test"])
        let claim = try #require(rig.spool.claim(id, from: .new))
        rig.delivery { _ in SMTPReply(250, nil, "ok") }.deliver(claim)
        #expect(rig.spool.locate(id) == nil)
    }

    @Test func temporaryFailureIsDeferredWithBackoff() throws {
        let rig = try Rig()
        defer { rig.cleanup() }
        let id = try rig.enqueue(["a@y.test"])
        let claim = try #require(rig.spool.claim(id, from: .new))
        let before = Date()
        rig.delivery { _ in SMTPReply(451, "4.3.0", "later") }.deliver(claim)
        #expect(rig.spool.locate(id) == .deferred)
        let env = try rig.spool.envelope(of: id, in: .deferred)
        #expect(env.attempts == 1 && env.recipients[0].state == .pending)
        #expect(env.recipients[0].reply == "451 4.3.0 later")
        let next = try #require(env.nextAttemptAt)
        #expect(abs(next - before.timeIntervalSince1970 - 60) < 5)
        // Not due yet.
        #expect(!rig.spool.claimable().contains { $0.id == id })
        #expect(rig.spool.claimable(now: before.addingTimeInterval(61)).contains { $0.id == id })
    }

    @Test func permanentFailureKeepsTheMessageInFailedWithTheReply() throws {
        let rig = try Rig()
        defer { rig.cleanup() }
        let id = try rig.enqueue(["ok@y.test", "bad@y.test"])
        let claim = try #require(rig.spool.claim(id, from: .new))
        rig.delivery { $0.hasPrefix("bad") ? SMTPReply(550, "5.1.1", "unknown user") : SMTPReply(250, nil, "ok") }
            .deliver(claim)
        #expect(rig.spool.locate(id) == .failed)
        let env = try rig.spool.envelope(of: id, in: .failed)
        #expect(env.recipients.map(\.state) == [.delivered, .failed])
        #expect(env.recipients[1].reply == "550 5.1.1 unknown user")
        #expect(env.history.count == 1 && env.history[0].route == "mx")
        #expect(try rig.spool.message(of: id, in: .failed) == Array("Subject: t\r\n\r\nbody\r\n".utf8))
    }

    @Test func tooOldMessageGoesToFailedInsteadOfDeferred() throws {
        let rig = try Rig()
        defer { rig.cleanup() }
        let id = try rig.enqueue(["a@y.test"], receivedAt: Date().addingTimeInterval(-7200))
        let claim = try #require(rig.spool.claim(id, from: .new))
        rig.delivery({ _ in SMTPReply(451, "4.3.0", "later") }, lifetime: 3600).deliver(claim)
        #expect(rig.spool.locate(id) == .failed)
        let env = try rig.spool.envelope(of: id, in: .failed)
        #expect(env.recipients[0].state == .failed)
        #expect(env.recipients[0].reply?.contains("maxQueueLifetime") == true)
        #expect(env.recipients[0].reply?.contains("451 4.3.0 later") == true)
    }
}
