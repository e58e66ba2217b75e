/// The limits of one SMTP server session, with defaults from RFC 5321 and the original service.
public struct SMTPLimits: Sendable, Equatable {
    /// Largest message accepted, in bytes (10 MiB, the original's limit). Announced in EHLO SIZE.
    public var maxMessageSize: Int = 10 * 1024 * 1024
    /// Recipients in one transaction (RFC 5321 §4.5.3.1.8 asks for at least 100).
    public var maxRecipients: Int = 1000
    /// Longest command or DATA line, CRLF included (RFC 5321 §4.5.3.1.4 allows 512 for commands
    /// and 1000 for text lines; 2000 tolerates the clients the original accepted).
    public var maxLineLength: Int = 2000
    /// Unrecognised or out-of-sequence commands before `421` and disconnect.
    public var maxErrors: Int = 10

    public init() {}
}
