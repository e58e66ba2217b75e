import Foundation
import NIOCore
import Testing

@testable import SMTPCore

/// The session state machine, driven without a channel (STYLE §5.6): bytes in, actions out.
@Suite struct SMTPServerStateMachineTests {
    static let plainAlice = "AUTH PLAIN " + base64("\0alice\0secret")

    // MARK: - Every command in every state

    /// Where a session is before the command under test, and how it got there.
    enum SessionState: String, CaseIterable, Sendable {
        case beforeHelo, afterEhlo, afterHelo, inTransaction, afterRcpt, inAuthExchange

        var setup: String {
            switch self {
            case .beforeHelo: return ""
            case .afterEhlo: return "EHLO client.example\r\n"
            case .afterHelo: return "HELO client.example\r\n"
            case .inTransaction: return "EHLO client.example\r\nMAIL FROM:<sender@example.com>\r\n"
            case .afterRcpt:
                return "EHLO client.example\r\nMAIL FROM:<sender@example.com>\r\nRCPT TO:<rcpt@example.com>\r\n"
            case .inAuthExchange: return "EHLO client.example\r\nAUTH PLAIN\r\n"
            }
        }

        var setupReplies: [String] {
            switch self {
            case .beforeHelo: return []
            case .afterEhlo, .afterHelo: return ["250"]
            case .inTransaction: return ["250", "250 2.1.0"]
            case .afterRcpt: return ["250", "250 2.1.0", "250 2.1.5"]
            case .inAuthExchange: return ["250", "334"]
            }
        }
    }

    struct CommandCase: Sendable, CustomTestStringConvertible {
        var command: String
        /// The reply in each state, in `SessionState.allCases` order.
        var replies: [String]
        var testDescription: String { self.command.isEmpty ? "(empty line)" : self.command }
    }

    /// In an AUTH exchange every line is a response: a command there is bad base64 or a bad PLAIN
    /// message (501 5.5.2), never executed.
    static let commandTable: [CommandCase] = [
        //                                  before-helo  after-ehlo   after-helo   in-mail      after-rcpt   in-auth
        CommandCase(command: "EHLO client.example",
                    replies: ["250", "250", "250", "250", "250", "501 5.5.2"]),
        CommandCase(command: "HELO client.example",
                    replies: ["250", "250", "250", "250", "250", "501 5.5.2"]),
        CommandCase(command: "MAIL FROM:<other@example.com>",
                    replies: ["503 5.5.1", "250 2.1.0", "250 2.1.0", "503 5.5.1", "503 5.5.1", "501 5.5.2"]),
        CommandCase(command: "RCPT TO:<second@example.com>",
                    replies: ["503 5.5.1", "503 5.5.1", "503 5.5.1", "250 2.1.5", "250 2.1.5", "501 5.5.2"]),
        CommandCase(command: "DATA",
                    replies: ["503 5.5.1", "503 5.5.1", "503 5.5.1", "554 5.5.1", "354", "501 5.5.2"]),
        CommandCase(command: "RSET",
                    replies: ["250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "501 5.5.2"]),
        CommandCase(command: "NOOP",
                    replies: ["250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "250 2.0.0", "501 5.5.2"]),
        CommandCase(command: "HELP",
                    replies: ["214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0", "214 2.0.0", "501 5.5.2"]),
        CommandCase(command: "VRFY postmaster",
                    replies: ["252 2.5.2", "252 2.5.2", "252 2.5.2", "252 2.5.2", "252 2.5.2", "501 5.5.2"]),
        CommandCase(command: "STARTTLS",
                    replies: ["502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "502 5.5.1", "501 5.5.2"]),
        CommandCase(command: SMTPServerStateMachineTests.plainAlice,
                    replies: ["503 5.5.1", "235 2.7.0", "503 5.5.1", "503 5.5.1", "503 5.5.1", "501 5.5.2"]),
        CommandCase(command: "QUIT",
                    replies: ["221 2.0.0 close", "221 2.0.0 close", "221 2.0.0 close", "221 2.0.0 close",
                              "221 2.0.0 close", "501 5.5.2"]),
        CommandCase(command: "XYZZY",
                    replies: ["500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "501 5.5.2"]),
        CommandCase(command: "",
                    replies: ["500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "501 5.5.2"]),
        CommandCase(command: "*",
                    replies: ["500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "500 5.5.1", "501 5.0.0"]),
    ]

    @Test(arguments: SMTPServerStateMachineTests.commandTable)
    func everyCommandInEveryState(_ testCase: CommandCase) {
        for (state, expected) in zip(SessionState.allCases, testCase.replies) {
            var session = SessionDriver()
            #expect(session.send(state.setup) == state.setupReplies, "setup of \(state)")
            #expect(session.send(testCase.command + "\r\n") == [expected], "\(testCase.command) in \(state)")
        }
    }

    @Test func commandsAreCaseInsensitive() {
        var session = SessionDriver()
        #expect(session.send("ehlo client.example\r\nmail from:<a@example.com>\r\nrcpt to:<b@example.com>\r\n")
            == ["250", "250 2.1.0", "250 2.1.5"])
        #expect(session.send("data\r\n") == ["354"])
    }

    @Test func greetingNamesTheHost() {
        var machine = SMTPServerStateMachine(configuration: .test(), policy: FakePolicy())
        #expect(machine.greeting() == .send(SMTPReply(220, nil, "mx.test.example ESMTP mailer")))
    }

    @Test func refusedGreetingClosesAndIgnoresInput() {
        var session = SessionDriver(greet: false)
        let refusal = SMTPReply(554, "5.7.1", "Access denied")
        #expect(session.machine.greeting(refusal: refusal) == .sendAndClose(refusal))
        #expect(session.send("EHLO client.example\r\nQUIT\r\n") == [])
        #expect(session.machine.bufferedBytes == 0)
    }

    @Test func ehloAdvertisesTheExtensions() {
        var session = SessionDriver()
        session.send("EHLO client.example\r\n")
        #expect(session.lastReply == SMTPReply(250, nil, [
            "mx.test.example", "PIPELINING", "SIZE 10485760", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
            "AUTH PLAIN LOGIN CRAM-MD5",
        ]))
        #expect(session.machine.esmtp)
        #expect(session.machine.heloName == "client.example")
    }

    @Test func ehloWithoutAccountsOffersNoAuth() {
        var session = SessionDriver(.test(auth: false))
        session.send("EHLO client.example\r\n")
        #expect(session.lastReply?.lines.contains { $0.hasPrefix("AUTH") } == false)
        #expect(session.send("AUTH PLAIN\r\n") == ["503 5.5.1"])
    }

    @Test func ehloAnnouncesTheConfiguredSizeAndStartTLS() {
        var session = SessionDriver(.test(limits: .with(maxMessageSize: 4096), startTLS: true))
        session.send("EHLO client.example\r\n")
        #expect(session.lastReply?.lines.contains("SIZE 4096") == true)
        #expect(session.lastReply?.lines.contains("STARTTLS") == true)
        #expect(session.send("HELP\r\n") == ["214 2.0.0"])
        #expect(session.lastReply?.lines.first?.hasSuffix("STARTTLS") == true)
    }

    @Test func heloAnswersWithTheHostnameOnly() {
        var session = SessionDriver()
        session.send("HELO client.example\r\n")
        #expect(session.lastReply == SMTPReply(250, nil, "mx.test.example"))
        #expect(!session.machine.esmtp)
    }

    @Test func heloAndEhloNeedAName() {
        var session = SessionDriver()
        #expect(session.send("HELO\r\nEHLO\r\nEHLO two words\r\n") == ["501 5.5.4", "501 5.5.4", "501 5.5.4"])
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["503 5.5.1"])
    }

    @Test func rsetEndsTheTransactionButKeepsTheGreeting() {
        var session = SessionDriver()
        session.send("EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        #expect(session.send("RSET\r\n") == ["250 2.0.0"])
        #expect(session.machine.transaction == nil)
        #expect(session.send("RCPT TO:<b@example.com>\r\nDATA\r\n") == ["503 5.5.1", "503 5.5.1"])
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["250 2.1.0"])
    }

    @Test func rsetBeforeHeloStillNeedsHelo() {
        var session = SessionDriver()
        #expect(session.send("RSET\r\nMAIL FROM:<a@example.com>\r\n") == ["250 2.0.0", "503 5.5.1"])
    }

    @Test func ehloInATransactionStartsOver() {
        var session = SessionDriver()
        session.send("EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        #expect(session.send("EHLO again.example\r\nDATA\r\n") == ["250", "503 5.5.1"])
        #expect(session.machine.heloName == "again.example")
    }

    @Test func nullSenderIsAccepted() {
        var session = SessionDriver()
        #expect(session.send("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\n")
            == ["250", "250 2.1.0", "250 2.1.5"])
        #expect(session.machine.transaction?.sender == "")
    }

    @Test func badAddressesAreRefused() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<not an address>\r\n") == ["501 5.1.7"])
        #expect(session.send("MAIL FROM:a@example.com\r\n") == ["501 5.5.4"])
        session.send("MAIL FROM:<a@example.com>\r\n")
        #expect(session.send("RCPT TO:<>\r\nRCPT TO:<no-at-sign>\r\n") == ["501 5.1.3", "501 5.1.3"])
        #expect(session.send("RCPT TO:<postmaster>\r\n") == ["250 2.1.5"])
    }

    @Test func vrfyNeverConfirmsAndHelpListsTheCommands() {
        var session = SessionDriver()
        #expect(session.send("VRFY alice\r\n") == ["252 2.5.2"])
        #expect(session.send("VRFY\r\n") == ["501 5.5.4"])
        session.send("HELP\r\n")
        #expect(session.lastReply?.lines.first?.contains("MAIL RCPT DATA") == true)
    }

    @Test func dataHandsTheMessageOverAndRepliesQueuedAs() {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n")
        #expect(session.send("DATA\r\n") == ["354"])
        #expect(session.lastReply == SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>"))
        #expect(session.send("Subject: hi\r\n\r\nHello\r\n.\r\n") == ["store", "250 2.0.0"])
        #expect(session.lastReply == SMTPReply(250, "2.0.0", "Ok: queued as QUEUEID0000000000000001"))
        var expected = SMTPTransaction(sender: "a@example.com")
        expected.recipients = ["b@example.com", "c@example.com"]
        #expect(session.stored.first?.transaction == expected)
        #expect(session.stored.first?.body == "Subject: hi\r\n\r\nHello\r\n")
        #expect(session.machine.transaction == nil)
        #expect(session.send("RCPT TO:<b@example.com>\r\n") == ["503 5.5.1"])
    }

    @Test func aFailedCommitGivesItsReplyAndEndsTheTransaction() {
        var session = SessionDriver()
        session.storeOutcome = .failure(.insufficientStorage)
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        #expect(session.send("x\r\n.\r\n") == ["store", "452 4.3.1"])
        #expect(session.send("RCPT TO:<b@example.com>\r\n") == ["503 5.5.1"])
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["250 2.1.0"])
    }

    @Test func policyRefusalAtMailIsTemporary() {
        let policy = FakePolicy()
        policy.refusals["busy@example.com"] = SMTPReply(451, "4.7.1", "Rate limit exceeded")
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<busy@example.com>\r\n") == ["451 4.7.1"])
        #expect(session.machine.transaction == nil)
        #expect(session.send("MAIL FROM:<fine@example.com>\r\n") == ["250 2.1.0"])
        #expect(policy.admitted.map(\.sender) == ["busy@example.com", "fine@example.com"])
    }

    // MARK: - Pipelining

    @Test func pipelinedCommandsAreAnsweredInOrder() {
        var session = SessionDriver()
        let group = "EHLO client.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
            + "RCPT TO:<bad>\r\nRCPT TO:<c@example.com>\r\nNOOP\r\nDATA\r\n"
        #expect(session.send(group) == ["250", "250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5", "250 2.0.0", "354"])
        #expect(session.machine.transaction?.recipients == ["b@example.com", "c@example.com"])
    }

    @Test func storePausesPipelinedCommandsUntilStored() {
        var session = SessionDriver()
        session.storeOutcome = nil
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        let rest = "body\r\n.\r\nMAIL FROM:<d@example.com>\r\nRCPT TO:<e@example.com>\r\nQUIT\r\n"
        #expect(session.send(rest) == ["store"])
        // Nothing more happens while the commit is out, however often the owner asks.
        #expect(session.machine.next() == .needInput)
        #expect(session.send("NOOP\r\n") == [])
        #expect(session.machine.bufferedBytes > 0)
        #expect(session.machine.stored(.success("ID1")) == .send(SMTPReply(250, "2.0.0", "Ok: queued as ID1")))
        #expect(session.pump().map(\.summary) == ["250 2.1.0", "250 2.1.5", "221 2.0.0 close"])
        #expect(session.closed)
        // After QUIT the NOOP that followed it is never answered.
        #expect(session.machine.next() == .needInput)
    }

    @Test func twoMessagesInOnePacket() {
        var session = SessionDriver()
        let text = "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\none\r\n.\r\n"
            + "MAIL FROM:<a@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n"
        #expect(session.send(text) == ["250", "250 2.1.0", "250 2.1.5", "354", "store", "250 2.0.0",
                                        "250 2.1.0", "250 2.1.5", "354", "store", "250 2.0.0", "221 2.0.0 close"])
        #expect(session.stored.map(\.body) == ["one\r\n", "two\r\n"])
        #expect(session.stored.map(\.transaction.recipients) == [["b@example.com"], ["c@example.com"]])
    }

    // MARK: - DATA framing

    @Test func dotStuffingIsUndoneExactly() {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        session.send("..\r\n...\r\n..leading\r\n.x\r\nmid.dle\r\n .\r\n\r\n.\r\n")
        #expect(session.stored.first?.body == ".\r\n..\r\n.leading\r\nx\r\nmid.dle\r\n .\r\n\r\n")
    }

    static let smugglingVariants = ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r.\r\n", "\r\n\r.\r\n", "\r\n\n.\r\n",
                                    "\r\n.\r\r\n", "\r\n. \r\n\n"]

    /// Each bare CR/LF variant of an end-of-data line is text: the smuggled commands after it are
    /// never run, the message is refused once, and only the real CRLF.CRLF ends it.
    @Test(arguments: SMTPServerStateMachineTests.smugglingVariants)
    func bareLineEndingsNeverEndData(_ variant: String) {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        let smuggled = "Subject: first\r\n\r\nfirst" + variant
            + "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nbad\r\n"
        #expect(session.send(smuggled) == [], "nothing may end DATA yet")
        #expect(session.send(".\r\n") == ["550 5.6.0"])
        #expect(session.lastReply == .bareLineEnding)
        #expect(session.stored.isEmpty)
        #expect(session.machine.transaction == nil)
        #expect(session.send("NOOP\r\n") == ["250 2.0.0"])
    }

    @Test(arguments: SMTPServerStateMachineTests.smugglingVariants)
    func bareLineEndingsDoNotEndDataWhenSentTogetherWithTheRealEnd(_ variant: String) {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        let all = "first" + variant + "MAIL FROM:<evil@example.com>\r\n.\r\nNOOP\r\n"
        #expect(session.send(all) == ["550 5.6.0", "250 2.0.0"])
    }

    @Test func declaredSizeOverTheLimitIsRefusedAtMail() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com> SIZE=10485761\r\n") == ["552 5.3.4"])
        #expect(session.lastReply == .messageTooBig)
        #expect(session.machine.transaction == nil)
        #expect(session.send("MAIL FROM:<a@example.com> SIZE=10485760\r\n") == ["250 2.1.0"])
        #expect(session.machine.transaction?.declaredSize == 10_485_760)
    }

    @Test func badSizeParameterIsASyntaxError() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com> SIZE=abc\r\nMAIL FROM:<a@example.com> SIZE=-1\r\n")
            == ["501 5.5.4", "501 5.5.4"])
    }

    @Test func dataOverTheLimitIsRefusedAfterTheEnd() {
        var session = SessionDriver(.test(limits: .with(maxMessageSize: 100)))
        session.send("EHLO c\r\nMAIL FROM:<a@example.com> SIZE=50\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        let line = String(repeating: "x", count: 40) + "\r\n"
        #expect(session.send(line + line + line) == [])
        #expect(session.send(".\r\n") == ["552 5.3.4"])
        #expect(session.lastReply == .messageTooBig)
        #expect(session.stored.isEmpty)
        #expect(session.machine.transaction == nil)
        // The session goes on.
        #expect(session.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nsmall\r\n.\r\n")
            == ["250 2.1.0", "250 2.1.5", "354", "store", "250 2.0.0"])
    }

    @Test func messageOfExactlyTheLimitIsAccepted() {
        var session = SessionDriver(.test(limits: .with(maxMessageSize: 100)))
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        let body = String(repeating: "y", count: 98) + "\r\n"
        #expect(session.send(body + ".\r\n") == ["store", "250 2.0.0"])
        #expect(session.stored.first?.body.utf8.count == 100)
    }

    // MARK: - Line length

    @Test func commandLineAtTheLimitIsAcceptedOneMoreIsNot() {
        var session = SessionDriver(.test(limits: .with(maxLineLength: 512)))
        let atLimit = "NOOP " + String(repeating: "a", count: 512 - 7) + "\r\n"
        #expect(atLimit.utf8.count == 512)
        #expect(session.send(atLimit) == ["250 2.0.0"])
        let over = "NOOP " + String(repeating: "a", count: 512 - 6) + "\r\n"
        #expect(session.send(over + "NOOP\r\n") == ["500 5.5.2", "250 2.0.0"])
        #expect(session.lastReply == .ok)
    }

    @Test func longCommandLineInPiecesGivesOneReply() {
        var session = SessionDriver(.test(limits: .with(maxLineLength: 512)))
        for _ in 0..<10 {
            #expect(session.send("MAIL FROM:<" + String(repeating: "a", count: 300)) == [])
        }
        #expect(session.machine.bufferedBytes <= 512)
        #expect(session.send(">\r\nNOOP\r\n") == ["500 5.5.2", "250 2.0.0"])
    }

    @Test func dataLineOverTheLimitRefusesTheMessage() {
        var session = SessionDriver(.test(limits: .with(maxLineLength: 100)))
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        #expect(session.send(String(repeating: "z", count: 98) + "\r\n.\r\n") == ["store", "250 2.0.0"])
        session.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        #expect(session.send(String(repeating: "z", count: 99) + "\r\n.\r\n") == ["552 5.3.4"])
        #expect(session.lastReply == .dataLineTooLong)
    }

    // MARK: - Recipients and errors

    @Test func recipientsOverTheLimitAreRefusedTemporarily() {
        var session = SessionDriver(.test(limits: .with(maxRecipients: 3)))
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n")
        let rcpts = (1...5).map { "RCPT TO:<r\($0)@example.com>\r\n" }.joined()
        #expect(session.send(rcpts) == ["250 2.1.5", "250 2.1.5", "250 2.1.5", "452 4.5.3", "452 4.5.3"])
        #expect(session.send("DATA\r\nx\r\n.\r\n") == ["354", "store", "250 2.0.0"])
        #expect(session.stored.first?.transaction.recipients == ["r1@example.com", "r2@example.com", "r3@example.com"])
    }

    @Test func tooManyErrorsCloseWith421() {
        var session = SessionDriver(.test(limits: .with(maxErrors: 3)))
        #expect(session.send("BAD1\r\nMAIL FROM:<a@example.com>\r\nBAD3\r\nNOOP\r\n")
            == ["500 5.5.1", "503 5.5.1", "421 4.7.0 close"])
        #expect(session.lastReply == .tooManyErrors)
        #expect(session.closed)
        #expect(session.send("NOOP\r\n") == [])
    }

    @Test func goodCommandsDoNotResetTheErrorCount() {
        var session = SessionDriver(.test(limits: .with(maxErrors: 2)))
        #expect(session.send("BAD\r\nNOOP\r\nEHLO c\r\nBAD\r\n")
            == ["500 5.5.1", "250 2.0.0", "250", "421 4.7.0 close"])
    }

    // MARK: - AUTH

    @Test func authPlainWithInitialResponse() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send(Self.plainAlice + "\r\n") == ["235 2.7.0"])
        #expect(session.lastReply == .authSucceeded)
        #expect(session.machine.authenticatedUser == "alice")
        #expect(policy.attempts == [.plain(authorization: "", user: "alice", password: "secret")])
        // Once authenticated: AUTH is no longer offered nor accepted.
        session.send("EHLO c\r\n")
        #expect(session.lastReply?.lines.contains { $0.hasPrefix("AUTH") } == false)
        #expect(session.send(Self.plainAlice + "\r\n") == ["503 5.5.1"])
    }

    @Test func authPlainWithContinuation() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH PLAIN\r\n") == ["334"])
        #expect(session.lastReply?.wire == "334 \r\n")
        #expect(session.send(base64("\0alice\0secret") + "\r\n") == ["235 2.7.0"])
        #expect(session.machine.authenticatedUser == "alice")
    }

    @Test func authPlainWithMatchingAuthorizationIdentity() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH PLAIN " + base64("alice\0alice\0secret") + "\r\n") == ["235 2.7.0"])
    }

    @Test func authPlainWithAnotherAuthorizationIdentityFails() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH PLAIN " + base64("tim\0alice\0secret") + "\r\n") == ["535 5.7.8 penalty"])
        #expect(session.machine.authenticatedUser == nil)
    }

    @Test func wrongPasswordsArePenalisedAndCounted() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.feed(Array(("AUTH PLAIN " + base64("\0alice\0wrong") + "\r\n").utf8))
            == [.penalty(.authFailed, failures: 1)])
        #expect(session.feed(Array(("AUTH PLAIN " + base64("\0nobody\0secret") + "\r\n").utf8))
            == [.penalty(.authFailed, failures: 2)])
        #expect(session.machine.authenticatedUser == nil)
        #expect(session.send(Self.plainAlice + "\r\n") == ["235 2.7.0"])
    }

    @Test func failedAuthCountsTowardTheErrorLimit() {
        var session = SessionDriver(.test(limits: .with(maxErrors: 3)))
        session.send("EHLO c\r\n")
        let bad = "AUTH PLAIN " + base64("\0alice\0wrong") + "\r\n"
        #expect(session.send(bad + bad + bad) == ["535 5.7.8 penalty", "535 5.7.8 penalty", "421 4.7.0 close"])
    }

    @Test func authLogin() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH LOGIN\r\n") == ["334"])
        #expect(session.lastReply == SMTPReply(334, nil, "VXNlcm5hbWU6"))
        #expect(session.send(base64("alice") + "\r\n") == ["334"])
        #expect(session.lastReply == SMTPReply(334, nil, "UGFzc3dvcmQ6"))
        #expect(session.send(base64("secret") + "\r\n") == ["235 2.7.0"])
        #expect(policy.attempts == [.login(user: "alice", password: "secret")])
        #expect(session.machine.authenticatedUser == "alice")
    }

    @Test func authLoginWithInitialResponse() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH LOGIN " + base64("alice") + "\r\n") == ["334"])
        #expect(session.lastReply == SMTPReply(334, nil, "UGFzc3dvcmQ6"))
        #expect(session.send(base64("wrong") + "\r\n") == ["535 5.7.8 penalty"])
    }

    @Test func authLoginTakesCommandsAsResponses() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        session.send("AUTH LOGIN\r\n")
        // "QUIT" is valid base64: it is the user name, not a command.
        #expect(session.send("QUIT\r\n") == ["334"])
        #expect(!session.closed)
        #expect(session.send("=\r\n") == ["535 5.7.8 penalty"])
        #expect(policy.attempts.count == 1)
    }

    @Test func authCramMD5WithRFC2195Example() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH CRAM-MD5\r\n") == ["334"])
        // RFC 2195 §2: the challenge as the server sends it.
        #expect(session.lastReply == SMTPReply(334, nil, "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"))
        #expect(session.send("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n") == ["235 2.7.0"])
        #expect(policy.attempts == [.cramMD5(user: "tim", challenge: FakePolicy.rfc2195Challenge,
                                             digestHex: "b913a602c7eda7a495b4e6e7334d3890")])
        #expect(session.machine.authenticatedUser == "tim")
    }

    @Test func authCramMD5DigestIsCaseInsensitive() {
        var session = SessionDriver()
        session.send("EHLO c\r\nAUTH CRAM-MD5\r\n")
        #expect(session.send(base64("tim B913A602C7EDA7A495B4E6E7334D3890") + "\r\n") == ["235 2.7.0"])
    }

    @Test func authCramMD5WrongDigestOrShapeFails() {
        var session = SessionDriver()
        session.send("EHLO c\r\nAUTH CRAM-MD5\r\n")
        #expect(session.send(base64("tim 00000000000000000000000000000000") + "\r\n") == ["535 5.7.8 penalty"])
        session.send("AUTH CRAM-MD5\r\n")
        #expect(session.send(base64("no-space-here") + "\r\n") == ["501 5.5.2"])
        #expect(session.send("AUTH CRAM-MD5 " + base64("tim x") + "\r\n") == ["501 5.5.4"])
    }

    @Test(arguments: ["AUTH PLAIN", "AUTH LOGIN", "AUTH LOGIN \(base64("alice"))", "AUTH CRAM-MD5"])
    func starCancelsTheExchange(_ start: String) {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n")
        #expect(session.send(start + "\r\n") == ["334"])
        #expect(session.send("*\r\n") == ["501 5.0.0"])
        #expect(session.lastReply == .authCancelled)
        #expect(policy.attempts.isEmpty)
        #expect(session.machine.authenticatedUser == nil)
        // Back to commands.
        #expect(session.send("NOOP\r\n") == ["250 2.0.0"])
    }

    @Test(arguments: ["AUTH PLAIN", "AUTH LOGIN", "AUTH CRAM-MD5"])
    func badBase64IsRefused(_ start: String) {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        session.send(start + "\r\n")
        #expect(session.send("!!not base64!!\r\n") == ["501 5.5.2"])
        #expect(session.lastReply == .authBadEncoding)
        #expect(session.send("NOOP\r\n") == ["250 2.0.0"])
    }

    @Test func badBase64AsInitialResponse() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH PLAIN %%%%\r\n") == ["501 5.5.2"])
        #expect(session.send("AUTH PLAIN " + base64("only-one-part") + "\r\n") == ["501 5.5.2"])
    }

    @Test func plaintextAuthRefusedWhenNotAllowed() {
        var session = SessionDriver(.test(plaintext: false))
        session.send("EHLO c\r\n")
        #expect(session.lastReply?.lines.last == "AUTH CRAM-MD5")
        #expect(session.send("AUTH PLAIN\r\n" + Self.plainAlice + "\r\nAUTH LOGIN\r\n")
            == ["538 5.7.11", "538 5.7.11", "538 5.7.11"])
        #expect(session.lastReply == .authEncryptionRequired)
        #expect(session.send("AUTH CRAM-MD5\r\n") == ["334"])
    }

    @Test(arguments: ["AUTH PLAIN", "AUTH LOGIN", "AUTH CRAM-MD5"])
    func tooLongResponseEndsTheExchange(_ start: String) {
        let policy = FakePolicy()
        var session = SessionDriver(.test(limits: .with(maxLineLength: 512)), policy: policy)
        session.send("EHLO c\r\n" + start + "\r\n")
        // The client reads the 5xx as the end of the exchange: what it sends next is a command.
        #expect(session.send(String(repeating: "A", count: 600) + "\r\nNOOP\r\n") == ["500 5.5.2", "250 2.0.0"])
        #expect(policy.attempts.isEmpty)
        #expect(session.send(Self.plainAlice + "\r\n") == ["235 2.7.0"])
    }

    @Test func unknownMechanism() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("AUTH GSSAPI\r\nAUTH\r\n") == ["504 5.5.4", "501 5.5.4"])
    }

    @Test func authNeedsEhloNotHelo() {
        var session = SessionDriver()
        session.send("HELO c\r\n")
        #expect(session.send(Self.plainAlice + "\r\n") == ["503 5.5.1"])
        #expect(session.lastReply == .badSequenceHelo)
    }

    @Test func authRequiredBeforeMail() {
        var session = SessionDriver(.test(authRequired: true))
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["530 5.7.0"])
        #expect(session.lastReply == .authRequired)
        #expect(session.send(Self.plainAlice + "\r\nMAIL FROM:<a@example.com>\r\n") == ["235 2.7.0", "250 2.1.0"])
    }

    @Test func authRequiredStillAsksForHeloFirst() {
        var session = SessionDriver(.test(authRequired: true))
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["503 5.5.1"])
    }

    @Test func authenticatedIdentityReachesThePolicy() {
        let policy = FakePolicy()
        var session = SessionDriver(policy: policy)
        session.send("EHLO c\r\n" + Self.plainAlice + "\r\nMAIL FROM:<a@example.com>\r\n")
        #expect(policy.admitted.first?.identity == "alice")
    }

    // MARK: - SMTPUTF8 and 8BITMIME

    @Test func nonASCIISenderNeedsSMTPUTF8() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<jösé@example.com>\r\n") == ["553 5.6.7"])
        #expect(session.send("MAIL FROM:<jösé@example.com> SMTPUTF8\r\n") == ["250 2.1.0"])
        #expect(session.machine.transaction?.smtputf8 == true)
        #expect(session.send("RCPT TO:<用户@例子.广告>\r\n") == ["250 2.1.5"])
    }

    @Test func nonASCIIRecipientNeedsSMTPUTF8() {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n")
        #expect(session.send("RCPT TO:<用户@例子.广告>\r\nRCPT TO:<b@bücher.example>\r\n") == ["553 5.6.7", "553 5.6.7"])
        #expect(session.send("RCPT TO:<b@example.com>\r\n") == ["250 2.1.5"])
    }

    @Test func smtputf8TakesNoValue() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com> SMTPUTF8=yes\r\n") == ["555 5.5.4"])
    }

    @Test func smtputf8AndBodyReachTheStoredTransaction() {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<jösé@example.com> SMTPUTF8 BODY=8BITMIME\r\n")
        session.send("RCPT TO:<b@example.com>\r\nDATA\r\n")
        session.send("Subject: café\r\n\r\nnaïve\r\n.\r\n")
        let transaction = session.stored.first?.transaction
        #expect(transaction?.smtputf8 == true)
        #expect(transaction?.eightBit == true)
        #expect(session.stored.first?.body == "Subject: café\r\n\r\nnaïve\r\n")
    }

    @Test func eightBitDataIsNotedWithoutBodyParameter() {
        var session = SessionDriver()
        session.send("EHLO c\r\nMAIL FROM:<a@example.com> BODY=7BIT\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        session.send("caf\u{e9}\r\n.\r\n")
        #expect(session.stored.first?.transaction.eightBit == true)
    }

    @Test func unsupportedParametersAreRefused() {
        var session = SessionDriver()
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com> BODY=BINARYMIME\r\nMAIL FROM:<a@example.com> RET=FULL\r\n")
            == ["555 5.5.4", "555 5.5.4"])
        #expect(session.send("MAIL FROM:<a@example.com> AUTH=<>\r\n") == ["250 2.1.0"])
        #expect(session.send("RCPT TO:<b@example.com> NOTIFY=NEVER\r\n") == ["555 5.5.4"])
    }

    // MARK: - STARTTLS

    @Test func startTLSStartsTheSessionOver() {
        var session = SessionDriver(.test(plaintext: false, startTLS: true))
        session.send("EHLO c\r\n")
        #expect(session.send("STARTTLS\r\n") == ["220 2.0.0 starttls"])
        session.machine.tlsStarted()
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["503 5.5.1"])
        session.send("EHLO c\r\n")
        #expect(session.lastReply?.lines.contains("STARTTLS") == false)
        #expect(session.lastReply?.lines.last == "AUTH PLAIN LOGIN CRAM-MD5")
    }

    @Test func startTLSForgetsAnAuthenticationMadeBeforeIt() {
        var session = SessionDriver(.test(authRequired: true, startTLS: true))
        session.send("EHLO c\r\n")
        #expect(session.send(Self.plainAlice + "\r\n") == ["235 2.7.0"])
        #expect(session.send("STARTTLS\r\n") == ["220 2.0.0 starttls"])
        session.machine.tlsStarted()
        #expect(session.machine.authenticatedUser == nil)
        session.send("EHLO c\r\n")
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["530 5.7.0"])
        #expect(session.send(Self.plainAlice + "\r\n") == ["235 2.7.0"])
        #expect(session.send("MAIL FROM:<a@example.com>\r\n") == ["250 2.1.0"])
    }

    @Test func plaintextPipelinedAfterStartTLSIsRefused() {
        var session = SessionDriver(.test(startTLS: true))
        session.send("EHLO c\r\n")
        #expect(session.send("STARTTLS\r\nMAIL FROM:<a@example.com>\r\n") == ["554 5.5.1 close"])
    }

    // MARK: - Drip-feeding

    static let wholeSession: String = {
        var text = "EHLO client.example\r\nAUTH PLAIN\r\n" + base64("\0alice\0secret") + "\r\n"
        text += "MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<bob@example.com>\r\n"
        text += "RCPT TO:<bad address>\r\nRCPT TO:<carol@example.com>\r\nDATA\r\n"
        text += "Subject: one\r\n\r\n..stuffed\r\n.\r\n"
        text += "MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
        text += "smuggle\r\n.\nMAIL FROM:<x@example.com>\r\n\r.\r\n.\r\n"
        text += "MAIL FROM:<alice@example.com>\r\nRCPT TO:<dave@example.com>\r\nDATA\r\nthree\r\n.\r\n"
        text += "NOOP\r\nBOGUS\r\n" + String(repeating: "L", count: 2100) + "\r\nRSET\r\nQUIT\r\n"
        return text
    }()

    @Test func dripFeedingGivesTheSameRepliesAsFeedingAtOnce() {
        var atOnce = SessionDriver()
        atOnce.send(Self.wholeSession)
        #expect(atOnce.events.map(\.summary) == [
            "250", "334", "235 2.7.0", "250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5", "354", "store", "250 2.0.0",
            "250 2.1.0", "250 2.1.5", "354", "550 5.6.0",
            "250 2.1.0", "250 2.1.5", "354", "store", "250 2.0.0",
            "250 2.0.0", "500 5.5.1", "500 5.5.2", "250 2.0.0", "221 2.0.0 close",
        ])
        #expect(atOnce.stored.map(\.body) == ["Subject: one\r\n\r\n.stuffed\r\n", "three\r\n"])

        var dripped = SessionDriver()
        for byte in Self.wholeSession.utf8 { dripped.feed([byte]) }
        #expect(dripped.events == atOnce.events)
    }

    @Test(arguments: [1, 2, 3, 7, 64, 1000])
    func randomChunksGiveTheSameReplies(seed: UInt64) {
        var atOnce = SessionDriver()
        atOnce.send(Self.wholeSession)
        var chunked = SessionDriver()
        var state = seed
        let bytes = Array(Self.wholeSession.utf8)
        var index = 0
        while index < bytes.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let size = Int((state >> 33) % 17) + 1
            let end = min(bytes.count, index + size)
            chunked.feed(Array(bytes[index..<end]))
            index = end
        }
        #expect(chunked.events == atOnce.events)
    }
}
