import Foundation
import IPC
import Logging
import Testing

@testable import Forwarder
@testable import SMTPCore

/// A transport that answers from a script per hop and records every transaction.
private final class FakeTransport: ForwarderTransport, @unchecked Sendable {
    enum Answer {
        case error(ForwarderAttemptError)
        /// Reply per recipient address; missing ones get 250.
        case replies([String: SMTPReply])
    }

    private let lock = NSLock()
    var script: [String: Answer] = [:]
    /// Hops that cannot take any message (the client state machine refuses before sending).
    var refuseLocally: [String: SMTPReply] = [:]
    private(set) var calls: [(hop: String, recipients: [String])] = []

    func send(_ transaction: SMTPClientTransaction, message: [UInt8], via hop: ForwarderHop) throws
        -> SMTPClientTransactionResult
    {
        self.lock.lock()
        self.calls.append((hop.name, transaction.recipients))
        let answer = self.script[hop.name] ?? .replies([:])
        let refusal = self.refuseLocally[hop.name]
        self.lock.unlock()
        if let refusal {
            return SMTPClientTransactionResult(replies: transaction.recipients.map { _ in refusal }, summary: refusal,
                                               refusedLocally: true)
        }
        switch answer {
        case .error(let error):
            throw error
        case .replies(let table):
            let replies = transaction.recipients.map { table[$0] ?? SMTPReply(250, "2.0.0", "ok") }
            return SMTPClientTransactionResult(replies: replies, summary: replies.last!)
        }
    }
}

/// A list several threads may append to.
final class Recorded: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ item: String) {
        self.lock.lock()
        self.items.append(item)
        self.lock.unlock()
    }
    var all: [String] {
        self.lock.lock()
        defer { self.lock.unlock() }
        return self.items
    }
}

private func hop(_ name: String) -> ForwarderHop { ForwarderHop(name: name, host: "127.0.0.1", port: 25) }

private func makeDelivery(_ transport: FakeTransport, hops: [String], batchSize: Int = 20,
                          breaker: ForwarderCircuitBreaker = ForwarderCircuitBreaker(threshold: 100, cooldown: 60),
                          slept: Recorded = Recorded()) -> ForwarderDelivery {
    ForwarderDelivery(
        spool: Spool(dataDir: NSTemporaryDirectory()),
        mode: .route(ForwarderProviderRoute(hops: hops.map(hop)), transport), breaker: breaker,
        policy: ForwarderRetryPolicy(initialDelay: 60, maxDelay: 3600, maxLifetime: 86400),
        batchSize: batchSize, batchDelay: 250, reporter: StatusReporter(writer: nil),
        logger: quietLogger, sleep: { ms in slept.add("\(ms)") })
}

private func envelope(_ recipients: [String]) -> Envelope {
    Envelope(id: "0000000000000000000001", sender: "a@x.test", recipients: recipients,
             receivedAt: Date().timeIntervalSince1970, client: "127.0.0.1:1", helo: "c")
}

@Suite struct ForwarderDeliveryTests {
    @Test func failoverPastConnectTLSAndAuthErrorsAnd4xx() {
        let transport = FakeTransport()
        transport.script["dead"] = .error(ForwarderAttemptError(.connectError, "refused"))
        transport.script["badcert"] = .error(ForwarderAttemptError(.tlsError, "certificate verify failed"))
        transport.script["badlogin"] = .error(ForwarderAttemptError(.authError, "535 5.7.8 credentials invalid"))
        transport.script["busy"] = .replies(["a@y.test": SMTPReply(451, "4.3.0", "later"), "b@y.test": SMTPReply(451, "4.3.0", "later")])
        let delivery = makeDelivery(transport, hops: ["dead", "badcert", "badlogin", "busy", "good"])
        var env = envelope(["a@y.test", "b@y.test"])
        let report = delivery.attempt(&env, message: Array("Subject: x\r\n\r\nhi\r\n".utf8))
        #expect(transport.calls.map(\.hop) == ["dead", "badcert", "badlogin", "busy", "good"])
        #expect(env.recipients.allSatisfy { $0.state == .delivered })
        #expect(report.delivered == 2 && report.deliveredVia == "good")
        #expect(env.history.map(\.route) == ["dead", "badcert", "badlogin", "busy", "good"])
        #expect(env.attempts == 1)
    }

    @Test func aProviderThatCannotTakeTheMessageFailsOverToTheNext() {
        let transport = FakeTransport()
        transport.refuseLocally["small"] = SMTPReply(552, "5.3.4", "message exceeds the server's SIZE limit")
        let delivery = makeDelivery(transport, hops: ["small", "big"])
        var env = envelope(["a@y.test"])
        let report = delivery.attempt(&env, message: Array("Subject: x\r\n\r\nhi\r\n".utf8))
        #expect(transport.calls.map(\.hop) == ["small", "big"])
        #expect(env.recipients[0].state == .delivered && report.deliveredVia == "big")
    }

    @Test func aMessageNoProviderCanTakeFailsForGood() {
        let transport = FakeTransport()
        transport.refuseLocally["one"] = SMTPReply(553, "5.6.7", "the server does not support SMTPUTF8")
        transport.refuseLocally["two"] = SMTPReply(553, "5.6.7", "the server does not support SMTPUTF8")
        let delivery = makeDelivery(transport, hops: ["one", "two"])
        var env = envelope(["a@y.test"])
        let report = delivery.attempt(&env, message: [])
        #expect(env.recipients[0].state == .failed && report.failed == 1)
        #expect(env.recipients[0].reply?.hasPrefix("553 5.6.7") == true)
        #expect(env.recipients[0].reply?.contains("one, two") == true)
    }

    @Test func aPassWithEveryProviderSkippedIsNotAnAttempt() {
        let transport = FakeTransport()
        transport.script["only"] = .error(ForwarderAttemptError(.connectError, "refused"))
        let delivery = makeDelivery(transport, hops: ["only"], breaker: ForwarderCircuitBreaker(threshold: 3, cooldown: 3600))
        var env = envelope(["a@y.test"])
        for _ in 0..<10 { _ = delivery.attempt(&env, message: []) }  // the circuit opens after 3 failures
        #expect(transport.calls.count == 3)
        #expect(env.attempts == 3)
        #expect(env.recipients[0].state == .pending)
        #expect(env.lastError?.contains("circuit open") == true)
    }

    @Test func permanentRecipientFailureIsFinalAndNotFailedOver() {
        let transport = FakeTransport()
        transport.script["first"] = .replies(["bad@y.test": SMTPReply(550, "5.1.1", "no such user"),
                                              "later@y.test": SMTPReply(450, "4.2.0", "greylisted")])
        let delivery = makeDelivery(transport, hops: ["first", "second"])
        var env = envelope(["ok@y.test", "bad@y.test", "later@y.test"])
        let report = delivery.attempt(&env, message: [])
        #expect(transport.calls.map(\.recipients) == [["ok@y.test", "bad@y.test", "later@y.test"], ["later@y.test"]])
        #expect(env.recipients.map(\.state) == [.delivered, .failed, .delivered])
        #expect(env.recipients[1].reply == "550 5.1.1 no such user")
        #expect(report.failed == 1 && report.delivered == 2)
    }

    @Test func allProvidersTemporaryLeavesRecipientsPending() {
        let transport = FakeTransport()
        transport.script["only"] = .error(ForwarderAttemptError(.timeout, "no answer"))
        let delivery = makeDelivery(transport, hops: ["only"])
        var env = envelope(["a@y.test"])
        _ = delivery.attempt(&env, message: [])
        #expect(env.recipients[0].state == .pending)
        #expect(env.recipients[0].reply?.contains("no answer") == true)
        #expect(env.lastError?.contains("only") == true)
    }

    @Test func recipientsGoInBatchesWithDelays() {
        let transport = FakeTransport()
        let slept = Recorded()
        let delivery = makeDelivery(transport, hops: ["mx"], batchSize: 20, slept: slept)
        var env = envelope((0..<45).map { "r\($0)@y.test" })
        _ = delivery.attempt(&env, message: [])
        #expect(transport.calls.map(\.recipients.count) == [20, 20, 5])
        #expect(slept.all == ["250", "250"])
        #expect(env.recipients.allSatisfy { $0.state == .delivered })
    }

    @Test func onlyPendingRecipientsAreTried() {
        let transport = FakeTransport()
        let delivery = makeDelivery(transport, hops: ["mx"])
        var env = envelope(["done@y.test", "todo@y.test", "dead@y.test"])
        env.recipients[0].state = .delivered
        env.recipients[2].state = .failed
        _ = delivery.attempt(&env, message: [])
        #expect(transport.calls.map(\.recipients) == [["todo@y.test"]])
    }

    @Test func openCircuitSkipsTheProvider() {
        let transport = FakeTransport()
        transport.script["flaky"] = .error(ForwarderAttemptError(.connectError, "refused"))
        let breaker = ForwarderCircuitBreaker(threshold: 2, cooldown: 3600)
        let delivery = makeDelivery(transport, hops: ["flaky", "backup"], breaker: breaker)
        for _ in 0..<3 {
            var env = envelope(["a@y.test"])
            _ = delivery.attempt(&env, message: [])
            #expect(env.recipients[0].state == .delivered)
        }
        #expect(transport.calls.map(\.hop) == ["flaky", "backup", "flaky", "backup", "backup"])
    }

    @Test func localModeStoresAnEmlFile() throws {
        let dir = NSTemporaryDirectory() + "fwd-local-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = Spool(dataDir: dir)
        try spool.createDirectories()
        let delivery = ForwarderDelivery(
            spool: spool, mode: .local,
            breaker: ForwarderCircuitBreaker(threshold: 1, cooldown: 1),
            policy: ForwarderRetryPolicy(initialDelay: 1, maxDelay: 1, maxLifetime: 1), batchSize: 20, batchDelay: 0,
            reporter: StatusReporter(writer: nil), logger: quietLogger)
        var env = envelope(["a@y.test", "b@y.test"])
        let report = delivery.attempt(&env, message: Array("Subject: s\r\n\r\nbody\r\n".utf8))
        #expect(report.deliveredVia == "local" && report.delivered == 2)
        let stored = FileManager.default.contents(atPath: "\(dir)/local/\(env.id).eml")
        #expect(stored == Data("Subject: s\r\n\r\nbody\r\n".utf8))
    }
}

@Suite struct ForwarderPolicyTests {
    @Test func backoffDoublesUpToTheMaximum() {
        let policy = ForwarderRetryPolicy(initialDelay: 60, maxDelay: 3600, maxLifetime: 432_000)
        #expect((1...8).map(policy.delay(afterAttempts:)) == [60, 120, 240, 480, 960, 1920, 3600, 3600])
        #expect(policy.delay(afterAttempts: 1000) == 3600)
        #expect(policy.delay(afterAttempts: 0) == 60)
    }

    @Test func expiry() {
        let policy = ForwarderRetryPolicy(initialDelay: 1, maxDelay: 2, maxLifetime: 100)
        let now = Date()
        #expect(!policy.isExpired(receivedAt: now.timeIntervalSince1970 - 99, now: now))
        #expect(policy.isExpired(receivedAt: now.timeIntervalSince1970 - 100, now: now))
    }

    @Test func batchSplit() {
        #expect(ForwarderRetryPolicy.batches(Array(0..<45), size: 20).map(\.count) == [20, 20, 5])
        #expect(ForwarderRetryPolicy.batches(Array(0..<20), size: 20).map(\.count) == [20])
        #expect(ForwarderRetryPolicy.batches([Int](), size: 20).isEmpty)
        #expect(ForwarderRetryPolicy.batches(Array(0..<3), size: 1) == [[0], [1], [2]])
    }

    @Test func circuitBreakerOpensThenProbes() {
        let changes = Recorded()
        let breaker = ForwarderCircuitBreaker(threshold: 3, cooldown: 10) { name, open in changes.add("\(name)=\(open)") }
        let t0 = Date(timeIntervalSince1970: 1000)
        for _ in 0..<2 { breaker.recordFailure("p", now: t0) }
        #expect(breaker.admit("p", now: t0))
        breaker.recordFailure("p", now: t0)
        #expect(!breaker.admit("p", now: t0.addingTimeInterval(9)))
        // Cool-down over: exactly one probe goes through.
        #expect(breaker.admit("p", now: t0.addingTimeInterval(10)))
        #expect(!breaker.admit("p", now: t0.addingTimeInterval(11)))
        // A failed probe opens it again.
        breaker.recordFailure("p", now: t0.addingTimeInterval(11))
        #expect(!breaker.admit("p", now: t0.addingTimeInterval(20)))
        #expect(breaker.admit("p", now: t0.addingTimeInterval(21)))
        breaker.recordSuccess("p")
        #expect(breaker.admit("p", now: t0.addingTimeInterval(21)))
        #expect(breaker.state(of: "p") == .closed(failures: 0))
        #expect(changes.all == ["p=true", "p=false"])
        // A success resets the count of consecutive failures.
        breaker.recordFailure("q", now: t0)
        breaker.recordFailure("q", now: t0)
        breaker.recordSuccess("q")
        breaker.recordFailure("q", now: t0)
        #expect(breaker.admit("q", now: t0))
    }

    @Test func routeOrdersProvidersByPriorityThenFileOrder() {
        var config = MailerConfig()
        config.forwardSMTP = true
        func p(_ name: String, _ priority: Int) -> MailerConfig.Provider {
            var provider = MailerConfig.Provider()
            provider.name = name
            provider.host = "\(name).test"
            provider.priority = priority
            return provider
        }
        config.forwardProviders = [p("b", 2), p("a", 1), p("c", 2), p("z", 0)]
        config.forwardHost = "legacy.test"
        config.forwardPort = 2525
        let route = ForwarderProviderRoute(config: config)
        #expect(route.hops.map(\.name) == ["z", "a", "b", "c", "legacy.test:2525"])
        let legs = route.legs(for: ["x@y.test", "z@y.test"])
        #expect(legs.count == 1 && legs[0].recipients == ["x@y.test", "z@y.test"])
        #expect(route.legs(for: []).isEmpty)
    }

    @Test func hopVerificationFromProvider() {
        var provider = MailerConfig.Provider()
        provider.host = "smtp.example.com"
        #expect(ForwarderHop(provider: provider).verification == .system)
        provider.caFile = "/etc/ca.pem"
        #expect(ForwarderHop(provider: provider).verification == .caFile("/etc/ca.pem"))
        provider.insecureSkipVerify = true
        #expect(ForwarderHop(provider: provider).verification == ForwarderHop.Verification.none)
        #expect(!ForwarderHop(provider: provider).isLoopback)
        provider.host = "127.0.0.1"
        #expect(ForwarderHop(provider: provider).isLoopback)
        provider.password = "hunter22"
        #expect(!"\(ForwarderHop(provider: provider))".contains("hunter22"))
    }
}
