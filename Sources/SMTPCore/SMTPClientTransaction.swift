/// One message to send over a client session: the envelope and what the message needs.
public struct SMTPClientTransaction: Equatable, Sendable {
    /// Reverse path without brackets ("" for the null sender).
    public var sender: String
    public var recipients: [String]
    /// Size in bytes of the message as stored (announced with SIZE=).
    public var size: Int
    /// The message has 8-bit content (BODY=8BITMIME when the server offers it).
    public var eightBit: Bool
    /// The envelope or headers need SMTPUTF8 (RFC 6531).
    public var smtputf8: Bool

    public init(sender: String, recipients: [String], size: Int, eightBit: Bool = false, smtputf8: Bool = false) {
        self.sender = sender
        self.recipients = recipients
        self.size = size
        self.eightBit = eightBit
        self.smtputf8 = smtputf8
    }
}

/// What a finished transaction did: the final reply for each recipient, in the order given.
public struct SMTPClientTransactionResult: Equatable, Sendable {
    /// One reply per recipient: the RCPT reply when it was refused, the MAIL reply when MAIL was
    /// refused, else the reply to DATA or to the end of the message.
    public var replies: [SMTPReply]
    /// The reply that decided the transaction (for the log).
    public var summary: SMTPReply
    /// True when nothing was sent because the server cannot take the message (SMTPUTF8, SIZE).
    public var refusedLocally: Bool

    public init(replies: [SMTPReply], summary: SMTPReply, refusedLocally: Bool = false) {
        self.replies = replies
        self.summary = summary
        self.refusedLocally = refusedLocally
    }
}
