import Foundation
import NIOCore
import Testing

@testable import SMTPCore

/// Drives a client state machine with server replies and records what it writes.
private struct Transcript {
    var machine: SMTPClientStateMachine
    var sent: [String] = []
    var last: SMTPClientStateMachine.Action?

    init(_ configuration: SMTPClientStateMachine.Configuration) {
        self.machine = SMTPClientStateMachine(configuration: configuration)
    }

    /// A session past the greeting and EHLO (answered with `capabilities`), ready for a transaction,
    /// with what it sent so far drained.
    static func ready(capabilities: String = ehlo) -> Transcript {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("220 x\r\n")
        t.server(capabilities)
        _ = t.drain()
        return t
    }

    /// Feeds one reply given in wire form (`250-a\r\n250 b\r\n`).
    mutating func server(_ wire: String) {
        var parser = SMTPClientReplyParser()
        parser.append(Array(wire.utf8))
        while let reply = try! parser.next() { self.take(self.machine.receivedReply(reply)) }
    }

    mutating func take(_ action: SMTPClientStateMachine.Action) {
        self.last = action
        if case .send(let bytes) = action {
            self.sent += String(decoding: bytes, as: UTF8.self).split(separator: "\r\n").map(String.init)
        }
    }

    mutating func begin(_ transaction: SMTPClientTransaction) { self.take(self.machine.begin(transaction)) }

    mutating func drain() -> [String] {
        defer { self.sent = [] }
        return self.sent
    }
}

private let ehlo = "250-upstream.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"

@Suite struct SMTPClientStateMachineTests {
    @Test func greetingEhloThenReady() {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("220 upstream.test ESMTP\r\n")
        #expect(t.drain() == ["EHLO relay.test"])
        t.server(ehlo)
        #expect(t.last == .ready)
        #expect(t.machine.capabilities.pipelining)
        #expect(t.machine.capabilities.size == 1_000_000)
    }

    @Test func heloFallbackWhenEhloIsRefused() {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("220 old.test\r\n")
        t.server("502 5.5.1 Command not implemented\r\n")
        #expect(t.drain() == ["EHLO relay.test", "HELO relay.test"])
        t.server("250 old.test\r\n")
        #expect(t.last == .ready)
        #expect(!t.machine.capabilities.esmtp)
        // Without PIPELINING, one command at a time; without SIZE, no SIZE=.
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test", "c@y.test"], size: 10))
        #expect(t.drain() == ["MAIL FROM:<a@x.test>"])
        t.server("250 ok\r\n")
        #expect(t.drain() == ["RCPT TO:<b@y.test>"])
        t.server("250 ok\r\n")
        #expect(t.drain() == ["RCPT TO:<c@y.test>"])
        t.server("250 ok\r\n")
        #expect(t.drain() == ["DATA"])
        t.server("354 go ahead\r\n")
        #expect(t.last == .sendMessage)
        t.server("250 queued\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [250, 250])
    }

    @Test func ehloTemporaryFailureEndsTheSession() {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("220 x\r\n")
        t.server("421 4.3.2 busy\r\n")
        guard case .fail(let error)? = t.last else { Issue.record("expected failure"); return }
        #expect(error.outcome == .temporary)
    }

    @Test func greetingRefusalFails() {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("554 5.7.1 go away\r\n")
        guard case .fail(let error)? = t.last else { Issue.record("expected failure"); return }
        #expect(error.outcome == .permanent)
        #expect(t.drain().isEmpty)
    }

    @Test func startTLSWheneverOfferedThenEhloAgainThenAuthPlain() {
        var t = Transcript(.init(heloName: "relay.test", credentials: ("user", "secret")))
        t.server("220 x\r\n")
        t.server("250-x\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n")
        #expect(t.drain() == ["EHLO relay.test", "STARTTLS"])
        t.server("220 2.0.0 Ready to start TLS\r\n")
        #expect(t.last == .startTLS)
        t.take(t.machine.tlsStarted())
        #expect(t.drain() == ["EHLO relay.test"])
        t.server("250-x\r\n250 AUTH PLAIN LOGIN\r\n")
        let token = Data("\u{0}user\u{0}secret".utf8).base64EncodedString()
        #expect(t.drain() == ["AUTH PLAIN \(token)"])
        t.server("235 2.7.0 Authentication successful\r\n")
        #expect(t.last == .ready)
    }

    @Test func startTLSRefusalIsATLSError() {
        var t = Transcript(.init(heloName: "relay.test"))
        t.server("220 x\r\n")
        t.server("250-x\r\n250 STARTTLS\r\n")
        t.server("454 4.7.0 TLS not available\r\n")
        guard case .fail(let error)? = t.last else { Issue.record("expected failure"); return }
        #expect(error.outcome == .tls)
    }

    @Test func authLoginOverImplicitTLS() {
        var t = Transcript(.init(heloName: "relay.test", credentials: ("user", "secret"), tlsActive: true))
        t.server("220 x\r\n")
        t.server("250-x\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n")
        // TLS is already active: no STARTTLS.
        #expect(t.drain() == ["EHLO relay.test", "AUTH LOGIN"])
        t.server("334 VXNlcm5hbWU6\r\n")
        #expect(t.drain() == [Data("user".utf8).base64EncodedString()])
        t.server("334 UGFzc3dvcmQ6\r\n")
        #expect(t.drain() == [Data("secret".utf8).base64EncodedString()])
        t.server("235 ok\r\n")
        #expect(t.last == .ready)
    }

    @Test func authFailureIsAnAuthError() {
        var t = Transcript(.init(heloName: "relay.test", credentials: ("user", "bad"), tlsActive: true))
        t.server("220 x\r\n")
        t.server("250-x\r\n250 AUTH PLAIN\r\n")
        t.server("535 5.7.8 Authentication credentials invalid\r\n")
        guard case .fail(let error)? = t.last else { Issue.record("expected failure"); return }
        #expect(error.outcome == .authentication)
    }

    @Test func noCredentialsInPlaintextToARemoteHost() {
        var t = Transcript(.init(heloName: "relay.test", credentials: ("user", "secret"), plaintextAuthAllowed: false))
        t.server("220 x\r\n")
        t.server("250-x\r\n250 AUTH PLAIN LOGIN\r\n")
        #expect(t.last == .fail(.authenticationNeedsTLS))
        #expect(t.drain() == ["EHLO relay.test"])
    }

    @Test func plaintextAuthToLoopbackIsAllowed() {
        var t = Transcript(.init(heloName: "relay.test", credentials: ("u", "p"), plaintextAuthAllowed: true))
        t.server("220 x\r\n")
        t.server("250-x\r\n250 AUTH LOGIN\r\n")
        #expect(t.drain().last == "AUTH LOGIN")
    }

    @Test func pipelinedMailAndRecipientsWithMixedReplies() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["ok@y.test", "gone@y.test", "later@y.test"],
                                      size: 1234, eightBit: true))
        // One write: MAIL, every RCPT and DATA (RFC 2920 §3.1).
        #expect(t.drain() == ["MAIL FROM:<a@x.test> SIZE=1234 BODY=8BITMIME", "RCPT TO:<ok@y.test>",
                              "RCPT TO:<gone@y.test>", "RCPT TO:<later@y.test>", "DATA"])
        t.server("250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no such user\r\n450 4.2.0 greylisted\r\n")
        #expect(t.drain().isEmpty)
        #expect(t.last == .awaitReply)
        t.server("354 go\r\n")
        #expect(t.last == .sendMessage)
        t.server("250 2.0.0 queued as X\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [250, 550, 450])
        #expect(result.replies[1].enhanced == "5.1.1")
        #expect(result.summary.code == 250)
    }

    @Test func refusedMailGivesEveryRecipientItsReply() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test", "c@y.test"], size: 1))
        t.server("451 4.3.0 try later\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [451, 451])
        #expect(result.summary.code == 451)
        #expect(t.machine.isReady)
    }

    @Test func noAcceptedRecipientMeansNoMessage() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test"], size: 1))
        _ = t.drain()
        t.server("250 ok\r\n550 5.1.1 unknown\r\n554 5.5.1 no valid recipients\r\n")
        #expect(t.drain().isEmpty)
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [550])
        #expect(result.summary.code == 550)
        #expect(t.machine.isReady)
    }

    @Test func a354WithNoAcceptedRecipientGetsAnEmptyMessage() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test"], size: 1))
        _ = t.drain()
        t.server("250 ok\r\n550 5.1.1 unknown\r\n354 go ahead anyway\r\n")
        #expect(t.drain() == ["."])
        t.server("554 5.5.1 no valid recipients\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [550])
        #expect(t.machine.isReady)
    }

    @Test func dataRefusalAppliesToAcceptedRecipients() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test", "c@y.test"], size: 1))
        t.server("250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n")
        t.server("354 go\r\n")
        t.server("554 5.6.0 content rejected\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [554, 550])
    }

    @Test func secondTransactionStartsWithRset() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test"], size: 1))
        t.server("250 ok\r\n250 ok\r\n354 go\r\n")
        t.server("250 ok\r\n")
        _ = t.drain()
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["c@y.test"], size: 1))
        // RSET leads the pipelined group: two round trips for the whole transaction.
        #expect(t.drain() == ["RSET", "MAIL FROM:<a@x.test> SIZE=1", "RCPT TO:<c@y.test>", "DATA"])
        #expect(t.machine.isResetting)
        t.server("250 2.0.0 flushed\r\n")
        #expect(t.last == .awaitReply)
        t.server("250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n")
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies.map(\.code) == [250])
        #expect(t.machine.transactionsDone == 2)
        _ = t.drain()
        t.take(t.machine.quit())
        #expect(t.drain() == ["QUIT"])
        t.server("221 bye\r\n")
        #expect(t.last == .close)
    }

    @Test func smtputf8NeededButNotOfferedIsPermanent() {
        var t = Transcript.ready()
        t.begin(SMTPClientTransaction(sender: "ü@x.test", recipients: ["b@y.test"], size: 1, smtputf8: true))
        #expect(t.drain().isEmpty)
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.refusedLocally && result.replies[0].isPermanent)
    }

    @Test func smtputf8AndSizeWhenOffered() {
        var t = Transcript.ready(capabilities: "250-x\r\n250-SMTPUTF8\r\n250 SIZE 100\r\n")
        t.begin(SMTPClientTransaction(sender: "ü@x.test", recipients: ["b@y.test"], size: 50, smtputf8: true))
        #expect(t.drain() == ["MAIL FROM:<ü@x.test> SIZE=50 SMTPUTF8"])
        t.server("250 ok\r\n")
        t.server("250 ok\r\n")
        t.server("354 go\r\n")
        t.server("250 ok\r\n")
        t.begin(SMTPClientTransaction(sender: "a@x.test", recipients: ["b@y.test"], size: 500))
        guard case .finished(let result)? = t.last else { Issue.record("not finished"); return }
        #expect(result.replies[0].code == 552)
    }

    @Test func unexpectedReplyWhileIdleFails() {
        var t = Transcript.ready()
        t.server("421 4.4.2 idle timeout\r\n")
        guard case .fail? = t.last else { Issue.record("expected failure"); return }
    }
}

@Suite struct SMTPClientReplyParserTests {
    @Test func multilineReplyWithEnhancedCodes() throws {
        var parser = SMTPClientReplyParser()
        parser.append(Array("250-2.0.0 first\r\n250 2.0.0 second\r\n".utf8))
        let reply = try parser.next()
        #expect(reply == SMTPReply(250, "2.0.0", ["first", "second"]))
        #expect(try parser.next() == nil)
    }

    @Test func replySplitAcrossReads() throws {
        var parser = SMTPClientReplyParser()
        parser.append(Array("25".utf8))
        #expect(try parser.next() == nil)
        parser.append(Array("0 ok\r".utf8))
        #expect(try parser.next() == nil)
        parser.append(Array("\n".utf8))
        #expect(try parser.next() == SMTPReply(250, nil, "ok"))
    }

    @Test func garbageIsAnError() {
        var parser = SMTPClientReplyParser()
        parser.append(Array("hello\r\n".utf8))
        #expect(throws: SMTPClientReplyParser.ParseError.self) { try parser.next() }
        var mixed = SMTPClientReplyParser()
        mixed.append(Array("250-a\r\n251 b\r\n".utf8))
        #expect(throws: SMTPClientReplyParser.ParseError.self) { try mixed.next() }
        var long = SMTPClientReplyParser(maxLineLength: 10)
        long.append(Array(repeating: UInt8(ascii: "2"), count: 20))
        #expect(throws: SMTPClientReplyParser.ParseError.self) { try long.next() }
    }

    @Test func capabilities() {
        let caps = SMTPClientCapabilities(ehloLines: ["x", "PIPELINING", "SIZE", "AUTH=LOGIN", "auth plain cram-md5",
                                                      "STARTTLS", "SMTPUTF8", "8BITMIME"])
        #expect(caps.pipelining && caps.startTLS && caps.smtputf8 && caps.eightBitMIME)
        #expect(caps.size == 0)
        #expect(caps.authMechanisms == ["LOGIN", "PLAIN", "CRAM-MD5"])
    }
}

@Suite struct DotStuffingTests {
    private func encode(_ s: String) -> String { String(decoding: DotStuffing.encode(Array(s.utf8)), as: UTF8.self) }

    @Test func leadingDotsAreDoubled() {
        #expect(encode(".a\r\nb\r\n..c\r\n.\r\n") == "..a\r\nb\r\n...c\r\n..\r\n.\r\n")
    }

    @Test func dotsInsideLinesAreKept() {
        #expect(encode("a.b\r\n x.\r\n") == "a.b\r\n x.\r\n.\r\n")
    }

    @Test func missingFinalLineEndIsAdded() {
        #expect(encode("abc") == "abc\r\n.\r\n")
        #expect(encode("") == ".\r\n")
    }

    @Test func bareLineEndsBecomeCRLF() {
        #expect(encode("a\n.b\rc\r\n") == "a\r\n..b\r\nc\r\n.\r\n")
        #expect(encode("a\r") == "a\r\n.\r\n")
    }

    @Test func encodedMessageRoundTripsThroughTheServerDecoder() {
        let message = "x\r\n.\r\n..\r\n.y\r\nend\r\n"
        var decoder = SMTPDataDecoder(maxSize: 1000, maxLineLength: 1000)
        var input = ByteBuffer(bytes: DotStuffing.encode(Array(message.utf8)))
        #expect(decoder.feed(&input) == .accepted)
        #expect(String(buffer: decoder.body) == message)
    }
}
