import Foundation
import NIOCore

@testable import SMTPCore

/// One thing a session did, in the order it did it.
enum SessionEvent: Equatable, CustomStringConvertible {
    case reply(SMTPReply)
    case close(SMTPReply)
    case penalty(SMTPReply, failures: Int)
    case store(SMTPTransaction, body: String)
    case startTLS(SMTPReply)

    /// Short form for tables: `250 2.1.0`, `421 4.7.0 close`, `535 5.7.8 penalty`, `store`.
    var summary: String {
        func code(_ reply: SMTPReply) -> String { reply.enhanced.map { "\(reply.code) \($0)" } ?? "\(reply.code)" }
        switch self {
        case .reply(let reply): return code(reply)
        case .close(let reply): return code(reply) + " close"
        case .penalty(let reply, _): return code(reply) + " penalty"
        case .store: return "store"
        case .startTLS(let reply): return code(reply) + " starttls"
        }
    }

    var reply: SMTPReply? {
        switch self {
        case .reply(let reply), .close(let reply), .penalty(let reply, _), .startTLS(let reply): return reply
        case .store: return nil
        }
    }

    var description: String {
        if case .store(let transaction, let body) = self { return "store(\(transaction), \(body.debugDescription))" }
        return self.reply?.wire.debugDescription ?? self.summary
    }
}

/// A policy with fixed accounts, a fixed CRAM-MD5 challenge (RFC 2195's example) and precomputed
/// digests, so that SMTPCore's tests need no crypto. It records what the state machine asked.
final class FakePolicy: SMTPSessionPolicy {
    static let rfc2195Challenge = "<1896.697170952@postoffice.reston.mci.net>"

    var accounts = ["alice": "secret", "tim": "tanstaaftanstaaf"]
    var challenge = FakePolicy.rfc2195Challenge
    /// HMAC-MD5(password, challenge) in hex for the fixed challenge, keyed by user (RFC 2195 §2).
    var cramDigests = ["tim": "b913a602c7eda7a495b4e6e7334d3890"]
    /// Senders `admit` refuses, with the reply.
    var refusals: [String: SMTPReply] = [:]
    private(set) var attempts: [SMTPAuthAttempt] = []
    private(set) var admitted: [(sender: String, identity: String?)] = []

    func verify(_ attempt: SMTPAuthAttempt) -> Bool {
        self.attempts.append(attempt)
        switch attempt {
        case .plain(_, let user, let password), .login(let user, let password):
            return self.accounts[user] == password
        case .cramMD5(let user, let challenge, let digestHex):
            return challenge == self.challenge && self.cramDigests[user] == digestHex
        }
    }

    func admit(sender: String, identity: String?) -> SMTPReply? {
        self.admitted.append((sender, identity))
        return self.refusals[sender]
    }

    func makeChallenge() -> String { self.challenge }
}

extension SMTPServerConfiguration {
    static func test(
        limits: SMTPLimits = SMTPLimits(), auth: Bool = true, authRequired: Bool = false, plaintext: Bool = true,
        startTLS: Bool = false
    ) -> SMTPServerConfiguration {
        SMTPServerConfiguration(
            hostname: "mx.test.example", limits: limits, authAvailable: auth, authRequired: authRequired,
            plaintextAuthAllowed: plaintext, startTLSAvailable: startTLS)
    }
}

extension SMTPLimits {
    static func with(
        maxMessageSize: Int? = nil, maxRecipients: Int? = nil, maxLineLength: Int? = nil, maxErrors: Int? = nil
    ) -> SMTPLimits {
        var limits = SMTPLimits()
        if let value = maxMessageSize { limits.maxMessageSize = value }
        if let value = maxRecipients { limits.maxRecipients = value }
        if let value = maxLineLength { limits.maxLineLength = value }
        if let value = maxErrors { limits.maxErrors = value }
        return limits
    }
}

/// Plays the part of the channel handler: feeds bytes, carries out every action, answers `.store`.
struct SessionDriver {
    var machine: SMTPServerStateMachine
    let policy: FakePolicy
    /// The answer to each `.store`; nil leaves the session waiting in `storing`.
    var storeOutcome: Result<String, SMTPReply>? = .success("QUEUEID0000000000000001")
    private(set) var events: [SessionEvent] = []
    private(set) var closed = false

    init(_ configuration: SMTPServerConfiguration = .test(), policy: FakePolicy = FakePolicy(), greet: Bool = true) {
        self.policy = policy
        self.machine = SMTPServerStateMachine(configuration: configuration, policy: policy)
        if greet {
            let greeting = self.machine.greeting()
            guard case .send(let reply) = greeting, reply.code == 220 else {
                preconditionFailure("no 220: \(greeting)")
            }
        }
    }

    /// Feeds `text` in one piece and returns the summaries of what followed.
    @discardableResult
    mutating func send(_ text: String) -> [String] { self.feed(Array(text.utf8)).map(\.summary) }

    /// Feeds `bytes` in one piece and returns what followed.
    @discardableResult
    mutating func feed(_ bytes: [UInt8]) -> [SessionEvent] {
        var buffer = ByteBuffer(bytes: bytes)
        self.machine.receive(&buffer)
        return self.pump()
    }

    /// Calls `next()` until the machine needs input, carrying out each action.
    @discardableResult
    mutating func pump() -> [SessionEvent] {
        var new: [SessionEvent] = []
        defer { self.events += new }
        var action = self.machine.next()
        while true {
            switch action {
            case .needInput:
                return new
            case .send(let reply):
                new.append(.reply(reply))
                action = self.machine.next()
            case .sendAndClose(let reply):
                new.append(.close(reply))
                self.closed = true
                action = self.machine.next()
            case .sendAfterPenalty(let reply, let failures):
                new.append(.penalty(reply, failures: failures))
                action = self.machine.next()
            case .store(let transaction, let body):
                new.append(.store(transaction, body: String(buffer: body)))
                guard let outcome = self.storeOutcome else { return new }
                action = self.machine.stored(outcome)
            case .startTLS(let reply):
                new.append(.startTLS(reply))
                return new
            }
        }
    }

    /// The last reply sent.
    var lastReply: SMTPReply? { self.events.last(where: { $0.reply != nil })?.reply }

    /// The transactions handed over for storing, with their bodies.
    var stored: [(transaction: SMTPTransaction, body: String)] {
        self.events.compactMap {
            if case .store(let transaction, let body) = $0 { return (transaction, body) }
            return nil
        }
    }
}

/// Base64 of a string's UTF-8 bytes.
func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
