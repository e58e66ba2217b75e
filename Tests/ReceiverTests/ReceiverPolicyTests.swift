import Crypto
import Foundation
import IPC
import NIOCore
import SMTPCore
import Testing

@testable import Receiver

/// Credential checks for PLAIN, LOGIN and CRAM-MD5, and the rate-limit answer at MAIL.
@Suite struct ReceiverPolicyTests {
    static func policy(
        _ credentials: [String: String] = ["alice": "secret", "tim": "tanstaaftanstaaf"],
        limits: MailerConfig.RateLimits = MailerConfig.RateLimits()
    ) -> ReceiverPolicy {
        ReceiverPolicy(credentials: credentials, hostname: "mx.test.example", rateLimiter: RateLimiter(limits: limits),
                       reporter: StatusReporter(writer: nil))
    }

    @Test func plainAndLogin() {
        let policy = Self.policy()
        #expect(policy.verify(.plain(authorization: "", user: "alice", password: "secret")))
        #expect(policy.verify(.login(user: "alice", password: "secret")))
        #expect(!policy.verify(.plain(authorization: "", user: "alice", password: "Secret")))
        #expect(!policy.verify(.login(user: "alice", password: "secret ")))
        #expect(!policy.verify(.login(user: "alice", password: "")))
        #expect(!policy.verify(.login(user: "bob", password: "secret")), "unknown user")
        #expect(!policy.verify(.login(user: "ALICE", password: "secret")), "user names are exact")
    }

    @Test func cramMD5WithTheRFC2195Example() {
        // RFC 2195 §2: user tim, password tanstaaftanstaaf.
        let policy = Self.policy()
        let challenge = "<1896.697170952@postoffice.reston.mci.net>"
        #expect(policy.verify(.cramMD5(user: "tim", challenge: challenge, digestHex: "b913a602c7eda7a495b4e6e7334d3890")))
        #expect(!policy.verify(.cramMD5(user: "tim", challenge: challenge, digestHex: "b913a602c7eda7a495b4e6e7334d3891")))
        #expect(!policy.verify(.cramMD5(user: "tim", challenge: "<1897.697170952@postoffice.reston.mci.net>",
                                        digestHex: "b913a602c7eda7a495b4e6e7334d3890")))
        #expect(!policy.verify(.cramMD5(user: "alice", challenge: challenge,
                                        digestHex: "b913a602c7eda7a495b4e6e7334d3890")))
        #expect(!policy.verify(.cramMD5(user: "tim", challenge: challenge, digestHex: "")))
    }

    @Test func cramMD5WithRFC2202TestCase2() {
        // RFC 2202 §2, test case 2: HMAC-MD5(key "Jefe", "what do ya want for nothing?").
        let policy = Self.policy(["Jefe": "Jefe"])
        #expect(policy.verify(.cramMD5(user: "Jefe", challenge: "what do ya want for nothing?",
                                       digestHex: "750c783e6ab0b503eaa86e310a5db738")))
    }

    @Test func challengesAreFreshAndNameTheHost() {
        let policy = Self.policy()
        let challenges = (0..<100).map { _ in policy.makeChallenge() }
        #expect(Set(challenges).count == 100)
        for challenge in challenges {
            #expect(challenge.hasPrefix("<") && challenge.hasSuffix("@mx.test.example>"))
        }
    }

    @Test func constantTimeEqual() {
        #expect(ReceiverPolicy.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(ReceiverPolicy.constantTimeEqual([], []))
        #expect(!ReceiverPolicy.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!ReceiverPolicy.constantTimeEqual([1, 2, 3], [1, 2]))
        #expect(!ReceiverPolicy.constantTimeEqual([1, 2], [1, 2, 0]), "a prefix padded with zeros is not equal")
    }

    @Test func rateLimitAnswers451() {
        var limits = MailerConfig.RateLimits()
        limits.enabled = true
        limits.maxPerHour = 1
        let policy = Self.policy(limits: limits)
        #expect(policy.admit(sender: "a@example.com", identity: nil) == nil)
        policy.rateLimiter.record(sender: "a@example.com")
        let refusal = policy.admit(sender: "a@example.com", identity: "alice")
        #expect(refusal?.code == 451)
        #expect(refusal?.enhanced == "4.7.1")
        #expect(refusal?.description.contains("sender hour") == true)
        #expect(policy.admit(sender: "b@example.com", identity: nil) == nil)
    }

    // MARK: - Through the session state machine

    /// Feeds one line and returns the actions up to the next `needInput`.
    static func send(_ machine: inout SMTPServerStateMachine, _ line: String) -> [SMTPServerStateMachine.Action] {
        var buffer = ByteBuffer(string: line + "\r\n")
        machine.receive(&buffer)
        var actions: [SMTPServerStateMachine.Action] = []
        while true {
            let action = machine.next()
            if action == .needInput { return actions }
            actions.append(action)
        }
    }

    static func session() -> SMTPServerStateMachine {
        var machine = SMTPServerStateMachine(
            configuration: SMTPServerConfiguration(hostname: "mx.test.example", authAvailable: true, authRequired: true),
            policy: Self.policy())
        _ = machine.greeting()
        _ = Self.send(&machine, "EHLO client.example")
        return machine
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    @Test func cramMD5ExchangeWithARandomChallenge() throws {
        var machine = Self.session()
        let actions = Self.send(&machine, "AUTH CRAM-MD5")
        guard case .send(let reply) = actions.first, reply.code == 334,
              let data = Data(base64Encoded: reply.lines[0]) else {
            Issue.record("no challenge: \(actions)")
            return
        }
        let challenge = String(decoding: data, as: UTF8.self)
        let mac = HMAC<Insecure.MD5>.authenticationCode(for: Data(challenge.utf8),
                                                        using: SymmetricKey(data: Data("secret".utf8)))
        let digest = mac.map { String(format: "%02x", $0) }.joined()
        #expect(Self.send(&machine, Self.base64("alice \(digest)")) == [.send(.authSucceeded)])
        #expect(machine.authenticatedUser == "alice")
    }

    @Test func plainAndLoginExchanges() {
        var plain = Self.session()
        #expect(Self.send(&plain, "AUTH PLAIN " + Self.base64("\0alice\0secret")) == [.send(.authSucceeded)])
        var login = Self.session()
        _ = Self.send(&login, "AUTH LOGIN")
        _ = Self.send(&login, Self.base64("alice"))
        #expect(Self.send(&login, Self.base64("secret")) == [.send(.authSucceeded)])
        var wrong = Self.session()
        #expect(Self.send(&wrong, "AUTH PLAIN " + Self.base64("\0alice\0nope"))
            == [.sendAfterPenalty(.authFailed, failures: 1)])
        #expect(Self.send(&wrong, "MAIL FROM:<a@example.com>") == [.send(.authRequired)])
    }
}
