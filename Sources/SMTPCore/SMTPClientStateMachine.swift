import Foundation

/// The client side of one SMTP session, without sockets: greeting, EHLO (HELO when EHLO gets a 5xx),
/// STARTTLS whenever the server offers it, AUTH PLAIN or LOGIN, then any number of transactions
/// (RSET before each one after the first), PIPELINING when offered (RSET, MAIL, every RCPT and DATA
/// in one write, RFC 2920 §3.1: two round trips per message), SIZE, BODY=8BITMIME and SMTPUTF8, and
/// QUIT.
///
/// The owner feeds each reply to `receivedReply(_:)` and carries out the one `Action` it returns.
/// Commands waiting for replies are kept in order in `expecting`, so pipelined replies are matched
/// to their commands.
public struct SMTPClientStateMachine {
    public struct Configuration: Sendable {
        /// The name given in EHLO/HELO.
        public var heloName: String
        /// Username and password for AUTH, nil for none.
        public var credentials: (username: String, password: String)?
        /// TLS is already in place (implicit TLS, port 465): STARTTLS is not used.
        public var tlsActive: Bool
        /// Credentials may travel without TLS (the server is on loopback).
        public var plaintextAuthAllowed: Bool

        public init(heloName: String, credentials: (username: String, password: String)? = nil,
                    tlsActive: Bool = false, plaintextAuthAllowed: Bool = false) {
            self.heloName = heloName
            self.credentials = credentials
            self.tlsActive = tlsActive
            self.plaintextAuthAllowed = plaintextAuthAllowed
        }
    }

    public enum Action: Equatable {
        /// Write these bytes (one command, or a pipelined group) and flush; a reply will follow.
        case send([UInt8])
        /// `354` arrived: write the message, dot-stuffed and terminated (`DotStuffing.encode`).
        case sendMessage
        /// `220` to STARTTLS: put TLS in place, then call `tlsStarted()`.
        case startTLS
        /// The session is set up: call `begin(_:)` for a transaction.
        case ready
        /// The transaction is over; the session may take another one or `quit()`.
        case finished(SMTPClientTransactionResult)
        /// The session cannot go on: close the connection.
        case fail(SMTPClientError)
        /// More replies are expected: wait for them.
        case awaitReply
        /// QUIT was answered: close the connection.
        case close
    }

    /// The reply each sent command waits for.
    enum Expect: Equatable {
        case greeting, ehlo, helo, startTLS, authPlain, authLoginStart, authLoginUser, authLoginPassword
        case rset, mail, rcpt(Int), data, message, quit
        /// The "." sent after a 354 that came although no recipient was accepted (RFC 2920 §3.1).
        case abortedMessage
    }

    enum Phase: Equatable {
        /// Connected, greeting or EHLO/STARTTLS/AUTH in progress.
        case negotiating
        /// Waiting for the owner to put TLS in place.
        case startingTLS
        /// Ready for a transaction.
        case ready
        /// A transaction is in progress.
        case transaction
        /// QUIT sent.
        case quitting
        /// An error ended the session.
        case failed
    }

    public private(set) var configuration: Configuration
    public private(set) var capabilities = SMTPClientCapabilities()
    /// Transactions finished on this connection.
    public private(set) var transactionsDone = 0
    private(set) var phase: Phase = .negotiating
    private(set) var expecting: [Expect] = [.greeting]
    private var transaction: SMTPClientTransaction?
    /// STARTTLS was done on this connection (no HELO fall-back afterwards).
    private var didStartTLS = false
    private var mailReply: SMTPReply?
    private var recipientReplies: [SMTPReply?] = []

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// True when the session waits for a reply.
    public var isAwaitingReply: Bool { !self.expecting.isEmpty }

    /// True when the session can take a transaction.
    public var isReady: Bool { self.phase == .ready }

    /// True while the RSET that starts a transaction on a reused connection waits for its reply.
    public var isResetting: Bool { self.expecting.first == .rset }

    /// TLS is in place after `.startTLS`: the session starts over with EHLO (RFC 3207 §4.2).
    public mutating func tlsStarted() -> Action {
        precondition(self.phase == .startingTLS, "tlsStarted() without .startTLS")
        self.configuration.tlsActive = true
        self.didStartTLS = true
        self.capabilities = SMTPClientCapabilities()
        self.phase = .negotiating
        return self.command("EHLO \(self.configuration.heloName)", expect: .ehlo)
    }

    /// Starts a transaction. When the server cannot take this message (SMTPUTF8 not offered, or it is
    /// bigger than the announced SIZE) nothing is sent and `.finished` comes back at once.
    public mutating func begin(_ transaction: SMTPClientTransaction) -> Action {
        precondition(self.phase == .ready, "begin(_:) while the session is not ready")
        precondition(!transaction.recipients.isEmpty, "a transaction needs recipients")
        if transaction.smtputf8 && !self.capabilities.smtputf8 {
            let reply = SMTPReply(553, "5.6.7", "The message needs SMTPUTF8, which the upstream server does not offer")
            return .finished(self.refuse(transaction, reply))
        }
        if let limit = self.capabilities.size, limit > 0, transaction.size > limit {
            let reply = SMTPReply(552, "5.3.4", "The message (\(transaction.size) bytes) exceeds the upstream server's SIZE limit of \(limit)")
            return .finished(self.refuse(transaction, reply))
        }
        self.phase = .transaction
        self.transaction = transaction
        self.mailReply = nil
        self.recipientReplies = Array(repeating: nil, count: transaction.recipients.count)
        if self.capabilities.pipelining {
            var group: [UInt8] = []
            if self.transactionsDone > 0 {
                group += Array("RSET\r\n".utf8)
                self.expecting.append(.rset)
            }
            return .send(group + self.pipelinedEnvelope())
        }
        if self.transactionsDone > 0 {
            return self.command("RSET", expect: .rset)
        }
        return self.sendEnvelope()
    }

    /// Ends the session politely.
    public mutating func quit() -> Action {
        self.phase = .quitting
        self.expecting = []
        return self.command("QUIT", expect: .quit)
    }

    /// Handles the next reply from the server.
    public mutating func receivedReply(_ reply: SMTPReply) -> Action {
        guard !self.expecting.isEmpty else {
            return self.failed(.unexpectedReply(reply))
        }
        let expect = self.expecting.removeFirst()
        switch expect {
        case .greeting:
            guard reply.code == 220 else { return self.failed(.rejected(stage: "greeting", reply: reply)) }
            return self.command("EHLO \(self.configuration.heloName)", expect: .ehlo)
        case .ehlo:
            if reply.code == 250 {
                self.capabilities = SMTPClientCapabilities(ehloLines: reply.lines)
                return self.afterHello()
            }
            if reply.isPermanent && !self.didStartTLS {
                return self.command("HELO \(self.configuration.heloName)", expect: .helo)
            }
            return self.failed(.rejected(stage: "EHLO", reply: reply))
        case .helo:
            guard reply.code == 250 else { return self.failed(.rejected(stage: "HELO", reply: reply)) }
            self.capabilities = SMTPClientCapabilities()
            return self.afterHello()
        case .startTLS:
            guard reply.code == 220 else { return self.failed(.startTLSRefused(reply)) }
            self.phase = .startingTLS
            return .startTLS
        case .authPlain, .authLoginPassword:
            guard reply.code == 235 else { return self.failed(.authenticationFailed(reply)) }
            self.phase = .ready
            return .ready
        case .authLoginStart:
            guard reply.code == 334, let credentials = self.configuration.credentials else {
                return self.failed(.authenticationFailed(reply))
            }
            return self.command(Self.base64(credentials.username), expect: .authLoginUser)
        case .authLoginUser:
            guard reply.code == 334, let credentials = self.configuration.credentials else {
                return self.failed(.authenticationFailed(reply))
            }
            return self.command(Self.base64(credentials.password), expect: .authLoginPassword)
        case .rset:
            guard reply.code == 250 else { return self.failed(.rejected(stage: "RSET", reply: reply)) }
            if self.capabilities.pipelining { return .awaitReply }
            return self.sendEnvelope()
        case .mail:
            self.mailReply = reply
            if self.capabilities.pipelining { return .awaitReply }
            guard reply.isPositive else { return self.finishTransaction(dataReply: nil) }
            return self.command(self.rcptCommand(0), expect: .rcpt(0))
        case .rcpt(let index):
            self.recipientReplies[index] = reply
            let count = self.transaction?.recipients.count ?? 0
            let mailAccepted = self.mailReply?.isPositive == true
            if self.capabilities.pipelining { return .awaitReply }  // DATA went with the group
            if index + 1 < count {
                guard mailAccepted else { preconditionFailure("RCPT sent after a refused MAIL") }
                return self.command(self.rcptCommand(index + 1), expect: .rcpt(index + 1))
            }
            if self.anyRecipientAccepted {
                return self.command("DATA", expect: .data)
            }
            return self.finishTransaction(dataReply: nil)
        case .data:
            let anyAccepted = self.anyRecipientAccepted
            guard reply.code == 354 else {
                // Pipelined DATA after refusals is answered 503/554: the refusals are the news.
                return self.finishTransaction(dataReply: anyAccepted ? reply : nil)
            }
            guard anyAccepted else {
                // A server that says 354 with nobody to deliver to gets an empty message ended at once.
                return self.command(".", expect: .abortedMessage)
            }
            self.expecting.append(.message)
            return .sendMessage
        case .message:
            return self.finishTransaction(dataReply: reply)
        case .abortedMessage:
            return self.finishTransaction(dataReply: nil)
        case .quit:
            self.phase = .failed
            return .close
        }
    }

    // MARK: - Steps

    private mutating func afterHello() -> Action {
        if !self.configuration.tlsActive && self.capabilities.startTLS {
            return self.command("STARTTLS", expect: .startTLS)
        }
        guard let credentials = self.configuration.credentials else {
            self.phase = .ready
            return .ready
        }
        guard self.configuration.tlsActive || self.configuration.plaintextAuthAllowed else {
            return self.failed(.authenticationNeedsTLS)
        }
        let mechanisms = self.capabilities.authMechanisms
        if mechanisms.contains("PLAIN") {
            let token = Self.base64("\u{0}\(credentials.username)\u{0}\(credentials.password)")
            return self.command("AUTH PLAIN \(token)", expect: .authPlain)
        }
        if mechanisms.contains("LOGIN") {
            return self.command("AUTH LOGIN", expect: .authLoginStart)
        }
        return self.failed(.authenticationUnavailable(mechanisms.sorted().joined(separator: " ")))
    }

    /// MAIL, one command at a time (no PIPELINING).
    private mutating func sendEnvelope() -> Action {
        self.command(self.mailCommand(), expect: .mail)
    }

    /// MAIL, every RCPT and DATA as one group (RFC 2920: DATA may end a group).
    private mutating func pipelinedEnvelope() -> [UInt8] {
        guard let transaction = self.transaction else { preconditionFailure("no transaction") }
        var bytes = Array("\(self.mailCommand())\r\n".utf8)
        self.expecting.append(.mail)
        for index in transaction.recipients.indices {
            bytes += Array("\(self.rcptCommand(index))\r\n".utf8)
            self.expecting.append(.rcpt(index))
        }
        bytes += Array("DATA\r\n".utf8)
        self.expecting.append(.data)
        return bytes
    }

    private func mailCommand() -> String {
        guard let transaction = self.transaction else { preconditionFailure("no transaction") }
        var mail = "MAIL FROM:<\(transaction.sender)>"
        if self.capabilities.size != nil { mail += " SIZE=\(transaction.size)" }
        // XXX: an 8-bit message to a server without 8BITMIME is sent as it is (as Postfix does by
        // default) rather than converted to quoted-printable.
        if transaction.eightBit && self.capabilities.eightBitMIME { mail += " BODY=8BITMIME" }
        if transaction.smtputf8 { mail += " SMTPUTF8" }
        return mail
    }

    /// MAIL was accepted and so was at least one RCPT: there is someone to send the message to.
    private var anyRecipientAccepted: Bool {
        self.mailReply?.isPositive == true && self.recipientReplies.contains { $0?.isPositive == true }
    }

    private func rcptCommand(_ index: Int) -> String {
        "RCPT TO:<\(self.transaction?.recipients[index] ?? "")>"
    }

    private mutating func finishTransaction(dataReply: SMTPReply?) -> Action {
        guard let transaction = self.transaction, let mailReply = self.mailReply else {
            preconditionFailure("transaction finished before MAIL was answered")
        }
        var replies: [SMTPReply] = []
        var summary = mailReply
        if !mailReply.isPositive {
            replies = Array(repeating: mailReply, count: transaction.recipients.count)
        } else {
            for reply in self.recipientReplies {
                guard let reply = reply else { preconditionFailure("RCPT without a reply") }
                replies.append(reply.isPositive ? (dataReply ?? reply) : reply)
            }
            summary = dataReply ?? self.recipientReplies.last.flatMap { $0 } ?? mailReply
        }
        self.transaction = nil
        self.transactionsDone += 1
        self.phase = .ready
        return .finished(SMTPClientTransactionResult(replies: replies, summary: summary))
    }

    private func refuse(_ transaction: SMTPClientTransaction, _ reply: SMTPReply) -> SMTPClientTransactionResult {
        SMTPClientTransactionResult(
            replies: Array(repeating: reply, count: transaction.recipients.count), summary: reply, refusedLocally: true)
    }

    private mutating func command(_ line: String, expect: Expect) -> Action {
        self.expecting.append(expect)
        return .send(Array("\(line)\r\n".utf8))
    }

    private mutating func failed(_ error: SMTPClientError) -> Action {
        self.phase = .failed
        self.expecting = []
        return .fail(error)
    }

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
}
