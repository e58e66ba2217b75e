import Foundation
import NIOCore

/// An AUTH exchange's result, for the policy to check (RFC 4616 PLAIN, LOGIN, RFC 2195 CRAM-MD5).
public enum SMTPAuthAttempt: Equatable, Sendable {
    case plain(authorization: String, user: String, password: String)
    case login(user: String, password: String)
    case cramMD5(user: String, challenge: String, digestHex: String)

    public var user: String {
        switch self {
        case .plain(_, let user, _), .login(let user, _), .cramMD5(let user, _, _): return user
        }
    }
}

/// Decisions the state machine asks of its owner, synchronously.
public protocol SMTPSessionPolicy {
    /// True when the credentials are valid.
    func verify(_ attempt: SMTPAuthAttempt) -> Bool
    /// nil admits the sender; a reply refuses it (rate limits answer `451 4.7.1`).
    func admit(sender: String, identity: String?) -> SMTPReply?
    /// A fresh CRAM-MD5 challenge, `<random.time@host>`.
    func makeChallenge() -> String
}

/// What a session offers; fixed for a connection except `tlsActive`.
public struct SMTPServerConfiguration: Sendable {
    public var hostname: String
    public var limits: SMTPLimits
    /// Accounts exist, so AUTH is offered.
    public var authAvailable: Bool
    /// MAIL before a successful AUTH gets `530 5.7.0`.
    public var authRequired: Bool
    /// PLAIN and LOGIN may be used (loopback client or TLS active).
    public var plaintextAuthAllowed: Bool
    /// A certificate is configured, so STARTTLS is offered.
    public var startTLSAvailable: Bool
    public var tlsActive: Bool = false

    public init(hostname: String, limits: SMTPLimits = SMTPLimits(), authAvailable: Bool = false,
                authRequired: Bool = false, plaintextAuthAllowed: Bool = true, startTLSAvailable: Bool = false) {
        self.hostname = hostname
        self.limits = limits
        self.authAvailable = authAvailable
        self.authRequired = authRequired
        self.plaintextAuthAllowed = plaintextAuthAllowed
        self.startTLSAvailable = startTLSAvailable
    }
}

/// The envelope of a transaction as the client gave it.
public struct SMTPTransaction: Equatable, Sendable {
    public var sender: String
    public var recipients: [String] = []
    public var smtputf8 = false
    public var eightBit = false
    public var declaredSize: Int?

    public init(sender: String) { self.sender = sender }
}

/// The server side of one SMTP session, without sockets (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
/// SMTPUTF8, ENHANCEDSTATUSCODES, AUTH). Bytes go in with `receive(_:)`; `next()` returns one action
/// at a time until `.needInput`. A `.store` pauses the session until `stored(_:)` is called, so
/// pipelined commands after DATA wait for the commit's reply.
public struct SMTPServerStateMachine {
    public enum Action: Equatable {
        /// Send this reply and call `next()` again.
        case send(SMTPReply)
        /// Send this reply and close the connection.
        case sendAndClose(SMTPReply)
        /// Authentication failed: send this reply after a penalty delay, then call `next()`.
        case sendAfterPenalty(SMTPReply, failures: Int)
        /// Commit the message durably, then call `stored(_:)` with the outcome.
        case store(SMTPTransaction, ByteBuffer)
        /// Send this reply, then put TLS in place and call `tlsStarted()`.
        case startTLS(SMTPReply)
        /// Nothing more to do until more bytes arrive: flush replies now.
        case needInput
    }

    enum State {
        /// Greeting sent, no EHLO/HELO yet.
        case connected
        /// EHLO/HELO done, no transaction.
        case greeted
        /// MAIL accepted; RCPT commands may follow.
        case transaction
        /// Reading the message after `354`.
        case data(SMTPDataDecoder)
        /// Waiting for the next line of an AUTH exchange.
        case authenticating(AuthStep)
        /// Waiting for the owner to commit a message (`stored(_:)`).
        case storing
        /// Waiting for the owner to put TLS in place (`tlsStarted()`).
        case startingTLS
        /// QUIT, too many errors or a refused connection: no more input is read.
        case closed
    }

    enum AuthStep {
        case plain
        case loginUser
        case loginPassword(user: String)
        case cramMD5(challenge: String)
    }

    public private(set) var configuration: SMTPServerConfiguration
    private let policy: any SMTPSessionPolicy
    private var state: State = .connected
    private var input: ByteBuffer
    private var discardingLongLine = false
    private var errors = 0
    private var authFailures = 0
    public private(set) var heloName: String?
    public private(set) var esmtp = false
    public private(set) var authenticatedUser: String?
    public private(set) var transaction: SMTPTransaction?

    public init(configuration: SMTPServerConfiguration, policy: any SMTPSessionPolicy) {
        self.configuration = configuration
        self.policy = policy
        self.input = ByteBufferAllocator().buffer(capacity: 1024)
    }

    // MARK: - Events

    /// The first reply: `220` when the client is welcome, or `554` and close.
    public mutating func greeting(refusal: SMTPReply? = nil) -> Action {
        if let refusal = refusal {
            self.state = .closed
            return .sendAndClose(refusal)
        }
        return .send(SMTPReply(220, nil, "\(self.configuration.hostname) ESMTP mailer"))
    }

    /// Appends bytes from the client.
    public mutating func receive(_ bytes: inout ByteBuffer) {
        if case .closed = self.state { return }
        self.input.writeBuffer(&bytes)
    }

    /// Bytes received but not yet processed (used to refuse plaintext pipelined after STARTTLS).
    public var bufferedBytes: Int { self.input.readableBytes }

    /// The next thing to do.
    public mutating func next() -> Action {
        switch self.state {
        case .closed, .storing, .startingTLS:
            return .needInput
        case .data(var decoder):
            self.state = .storing  // placeholder while the decoder is out of the enum
            guard let outcome = decoder.feed(&self.input) else {
                self.state = .data(decoder)
                return .needInput
            }
            self.compactInput()
            guard let transaction = self.transaction else { preconditionFailure("DATA without a transaction") }
            switch outcome {
            case .accepted:
                var final = transaction
                final.eightBit = final.eightBit || decoder.sawEightBit
                self.state = .storing
                return .store(final, decoder.body)
            case .tooLarge: return self.endTransaction(with: .messageTooBig)
            case .bareLineEnding: return self.endTransaction(with: .bareLineEnding)
            case .lineTooLong: return self.endTransaction(with: .dataLineTooLong)
            }
        case .connected, .greeted, .transaction, .authenticating:
            guard let line = self.readLine() else { return .needInput }
            switch line {
            case .tooLong:
                // A 5xx ends an AUTH exchange for the client too: what it sends next is a command.
                if case .authenticating = self.state { self.state = .greeted }
                return self.error(.lineTooLong)
            case .line(let text):
                if case .authenticating(let step) = self.state { return self.continueAuth(step, text) }
                return self.handle(text)
            }
        }
    }

    /// The owner committed the message (`.success(queueID)`) or could not (`.failure(reply)`).
    public mutating func stored(_ result: Result<String, SMTPReply>) -> Action {
        guard case .storing = self.state else { preconditionFailure("stored() while not storing") }
        self.state = .greeted
        self.transaction = nil
        switch result {
        case .success(let id): return .send(SMTPReply(250, "2.0.0", "Ok: queued as \(id)"))
        case .failure(let reply): return .send(reply)
        }
    }

    /// TLS is in place: the session starts over (RFC 3207 §4.2), the client must EHLO again.
    public mutating func tlsStarted() {
        guard case .startingTLS = self.state else { preconditionFailure("tlsStarted() while not starting TLS") }
        self.configuration.tlsActive = true
        self.configuration.plaintextAuthAllowed = true
        // RFC 3207 §4.2: forget what the client said before TLS, its authentication included. The
        // count of failed AUTH attempts stays: it is ours, and a new TLS session must not reset it.
        self.state = .connected
        self.heloName = nil
        self.esmtp = false
        self.authenticatedUser = nil
        self.transaction = nil
        self.input.clear()
    }

    // MARK: - Commands

    private mutating func handle(_ line: String) -> Action {
        let command: SMTPCommand
        switch SMTPCommandParser.parse(line) {
        case .success(let parsed): command = parsed
        case .failure(let reply): return self.error(reply)
        }
        switch command {
        case .ehlo(let name), .helo(let name):
            if case .ehlo = command { self.esmtp = true } else { self.esmtp = false }
            self.heloName = name
            self.transaction = nil
            self.state = .greeted
            if case .helo = command { return .send(SMTPReply(250, nil, self.configuration.hostname)) }
            return .send(SMTPReply(250, nil, self.ehloLines()))
        case .mail(let sender, let parameters):
            return self.mail(sender, parameters)
        case .rcpt(let recipient, let parameters):
            return self.rcpt(recipient, parameters)
        case .data:
            guard case .transaction = self.state, let transaction = self.transaction else { return self.error(.needMail) }
            guard !transaction.recipients.isEmpty else { return self.error(.noRecipients) }
            self.state = .data(SMTPDataDecoder(
                maxSize: self.configuration.limits.maxMessageSize, maxLineLength: self.configuration.limits.maxLineLength))
            return .send(.startData)
        case .rset:
            self.transaction = nil
            if self.heloName != nil { self.state = .greeted }
            return .send(.ok)
        case .noop:
            return .send(.ok)
        case .quit:
            self.state = .closed
            return .sendAndClose(.bye)
        case .help:
            return .send(SMTPReply(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP AUTH"
                + (self.configuration.startTLSAvailable ? " STARTTLS" : "")))
        case .vrfy:
            return .send(.vrfy)
        case .starttls:
            guard self.configuration.startTLSAvailable, !self.configuration.tlsActive else {
                return self.error(SMTPReply(502, "5.5.1", "STARTTLS not available"))
            }
            guard self.heloName != nil else { return self.error(.badSequenceHelo) }
            guard self.input.readableBytes == 0 else {
                // RFC 3207 §5 / CVE-2011-0411: no plaintext may ride along after STARTTLS.
                self.state = .closed
                return .sendAndClose(SMTPReply(554, "5.5.1", "Pipelined input after STARTTLS is not allowed"))
            }
            self.state = .startingTLS
            return .startTLS(SMTPReply(220, "2.0.0", "Ready to start TLS"))
        case .auth(let mechanism, let initial):
            return self.auth(mechanism, initial)
        }
    }

    private func ehloLines() -> [String] {
        var lines = [self.configuration.hostname, "PIPELINING", "SIZE \(self.configuration.limits.maxMessageSize)",
                     "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.configuration.startTLSAvailable && !self.configuration.tlsActive { lines.append("STARTTLS") }
        if self.configuration.authAvailable && self.authenticatedUser == nil {
            lines.append(self.configuration.plaintextAuthAllowed ? "AUTH PLAIN LOGIN CRAM-MD5" : "AUTH CRAM-MD5")
        }
        return lines
    }

    private mutating func mail(_ sender: String, _ parameters: [SMTPParameter]) -> Action {
        guard self.heloName != nil else { return self.error(.badSequenceHelo) }
        guard self.transaction == nil else { return self.error(.nestedMail) }
        if self.configuration.authRequired && self.authenticatedUser == nil { return self.error(.authRequired) }
        var transaction = SMTPTransaction(sender: sender)
        for parameter in parameters {
            switch (parameter.keyword, parameter.value?.uppercased()) {
            case ("SIZE", let value?):
                guard let size = Int(value), size >= 0 else {
                    return self.error(SMTPReply(501, "5.5.4", "Bad SIZE parameter"))
                }
                guard size <= self.configuration.limits.maxMessageSize else {
                    return self.error(.messageTooBig)
                }
                transaction.declaredSize = size
            case ("BODY", "7BIT"): transaction.eightBit = false
            case ("BODY", "8BITMIME"): transaction.eightBit = true
            case ("SMTPUTF8", nil): transaction.smtputf8 = true
            case ("AUTH", _): break  // RFC 4954 §5: accepted and not relied upon.
            default:
                return self.error(SMTPReply(555, "5.5.4", "Unsupported MAIL parameter \(parameter.keyword)"))
            }
        }
        if !transaction.smtputf8 && !SMTPAddress.isASCII(sender) {
            return self.error(SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        }
        if let refusal = self.policy.admit(sender: sender, identity: self.authenticatedUser) {
            return .send(refusal)
        }
        self.transaction = transaction
        self.state = .transaction
        return .send(.mailOk)
    }

    private mutating func rcpt(_ recipient: String, _ parameters: [SMTPParameter]) -> Action {
        guard case .transaction = self.state, var transaction = self.transaction else { return self.error(.needMail) }
        if let parameter = parameters.first {
            return self.error(SMTPReply(555, "5.5.4", "Unsupported RCPT parameter \(parameter.keyword)"))
        }
        if !transaction.smtputf8 && !SMTPAddress.isASCII(recipient) {
            return self.error(SMTPReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
        }
        guard transaction.recipients.count < self.configuration.limits.maxRecipients else {
            return .send(.tooManyRecipients)
        }
        transaction.recipients.append(recipient)
        self.transaction = transaction
        return .send(.rcptOk)
    }

    // MARK: - AUTH

    private mutating func auth(_ mechanism: String, _ initial: String?) -> Action {
        guard self.configuration.authAvailable else {
            return self.error(SMTPReply(503, "5.5.1", "AUTH not available"))
        }
        guard self.heloName != nil, self.esmtp else { return self.error(.badSequenceHelo) }
        guard self.authenticatedUser == nil else { return self.error(SMTPReply(503, "5.5.1", "Already authenticated")) }
        guard self.transaction == nil else {
            return self.error(SMTPReply(503, "5.5.1", "AUTH not allowed during a mail transaction"))
        }
        switch mechanism {
        case "PLAIN", "LOGIN":
            guard self.configuration.plaintextAuthAllowed else { return self.error(.authEncryptionRequired) }
            if mechanism == "PLAIN" {
                guard let initial = initial else {
                    self.state = .authenticating(.plain)
                    return .send(SMTPReply(334, nil, ""))
                }
                return self.continueAuth(.plain, initial)
            }
            if let initial = initial { return self.continueAuth(.loginUser, initial) }
            self.state = .authenticating(.loginUser)
            return .send(SMTPReply(334, nil, "VXNlcm5hbWU6"))
        case "CRAM-MD5":
            guard initial == nil else { return self.error(SMTPReply(501, "5.5.4", "CRAM-MD5 takes no initial response")) }
            let challenge = self.policy.makeChallenge()
            self.state = .authenticating(.cramMD5(challenge: challenge))
            return .send(SMTPReply(334, nil, Data(challenge.utf8).base64EncodedString()))
        default:
            return self.error(SMTPReply(504, "5.5.4", "Unrecognized authentication type"))
        }
    }

    private mutating func continueAuth(_ step: AuthStep, _ line: String) -> Action {
        self.state = .greeted
        if line == "*" { return self.error(.authCancelled) }
        let decoded: String
        if line == "=" {
            decoded = ""
        } else {
            guard let data = Data(base64Encoded: line) else { return self.error(.authBadEncoding) }
            decoded = String(decoding: data, as: UTF8.self)
        }
        let attempt: SMTPAuthAttempt
        switch step {
        case .plain:
            let parts = decoded.split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 3 else { return self.error(.authBadEncoding) }
            attempt = .plain(authorization: parts[0], user: parts[1], password: parts[2])
        case .loginUser:
            self.state = .authenticating(.loginPassword(user: decoded))
            return .send(SMTPReply(334, nil, "UGFzc3dvcmQ6"))
        case .loginPassword(let user):
            attempt = .login(user: user, password: decoded)
        case .cramMD5(let challenge):
            guard let space = decoded.lastIndex(of: " ") else { return self.error(.authBadEncoding) }
            attempt = .cramMD5(user: String(decoded[..<space]), challenge: challenge,
                               digestHex: String(decoded[decoded.index(after: space)...]).lowercased())
        }
        if case .plain(let authorization, let user, _) = attempt, !authorization.isEmpty, authorization != user {
            self.authFailures += 1
            return self.penalty(SMTPReply(535, "5.7.8", "Authorization identity differs from the user"))
        }
        guard self.policy.verify(attempt) else {
            self.authFailures += 1
            return self.penalty(.authFailed)
        }
        self.authenticatedUser = attempt.user
        return .send(.authSucceeded)
    }

    private mutating func penalty(_ reply: SMTPReply) -> Action {
        self.errors += 1
        if self.errors >= self.configuration.limits.maxErrors {
            self.state = .closed
            return .sendAndClose(.tooManyErrors)
        }
        return .sendAfterPenalty(reply, failures: self.authFailures)
    }

    // MARK: - Helpers

    private mutating func endTransaction(with reply: SMTPReply) -> Action {
        self.transaction = nil
        self.state = .greeted
        return .send(reply)
    }

    /// A reply that counts toward the error limit; the limit turns it into `421` and close.
    private mutating func error(_ reply: SMTPReply) -> Action {
        self.errors += 1
        if self.errors >= self.configuration.limits.maxErrors {
            self.state = .closed
            return .sendAndClose(.tooManyErrors)
        }
        return .send(reply)
    }

    enum Line {
        case line(String)
        case tooLong
    }

    private mutating func readLine() -> Line? {
        let limit = self.configuration.limits.maxLineLength
        while true {
            let view = self.input.readableBytesView
            guard let lf = view.firstIndex(of: 0x0A) else {
                if view.count > limit {
                    self.discardingLongLine = true
                    self.input.clear()
                }
                return nil
            }
            let length = lf - view.startIndex
            if self.discardingLongLine || length + 1 > limit {
                self.discardingLongLine = false
                self.input.moveReaderIndex(forwardBy: length + 1)
                self.compactInput()
                return .tooLong
            }
            var bytes = view[view.startIndex..<lf]
            if bytes.last == 0x0D { bytes = bytes.dropLast() }
            let text = String(decoding: bytes, as: UTF8.self)
            self.input.moveReaderIndex(forwardBy: length + 1)
            self.compactInput()
            return .line(text)
        }
    }

    private mutating func compactInput() {
        if self.input.readableBytes == 0 {
            self.input.clear()
        } else if self.input.readerIndex > 64 * 1024 {
            self.input.discardReadBytes()
        }
    }
}
