/// A server reply: a three-digit code, an optional enhanced status code (RFC 3463) and text lines.
public struct SMTPReply: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: Int
    public var enhanced: String?
    public var lines: [String]

    public init(_ code: Int, _ enhanced: String?, _ lines: [String]) {
        self.code = code
        self.enhanced = enhanced
        self.lines = lines.isEmpty ? [""] : lines
    }

    public init(_ code: Int, _ enhanced: String?, _ text: String) {
        self.init(code, enhanced, [text])
    }

    public var isPositive: Bool { self.code < 400 }
    public var isTransient: Bool { (400..<500).contains(self.code) }
    public var isPermanent: Bool { self.code >= 500 }

    /// The wire form: `250-first\r\n250 last\r\n`, each line carrying the enhanced code.
    public var wire: String {
        var out = ""
        for (index, line) in self.lines.enumerated() {
            let separator = index == self.lines.count - 1 ? " " : "-"
            out += "\(self.code)\(separator)"
            if let enhanced = self.enhanced { out += line.isEmpty ? enhanced : "\(enhanced) \(line)" } else { out += line }
            out += "\r\n"
        }
        return out
    }

    /// One line for logs and envelopes: `550 5.1.1 text`.
    public var description: String {
        let text = self.lines.joined(separator: " / ")
        return [String(self.code), self.enhanced, text].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}

extension SMTPReply {
    public static let ok = SMTPReply(250, "2.0.0", "Ok")
    public static let mailOk = SMTPReply(250, "2.1.0", "Ok")
    public static let rcptOk = SMTPReply(250, "2.1.5", "Ok")
    public static let startData = SMTPReply(354, nil, "End data with <CR><LF>.<CR><LF>")
    public static let bye = SMTPReply(221, "2.0.0", "Bye")
    public static let vrfy = SMTPReply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
    public static let unrecognized = SMTPReply(500, "5.5.1", "Command unrecognized")
    public static let lineTooLong = SMTPReply(500, "5.5.2", "Line too long")
    public static let badSequenceHelo = SMTPReply(503, "5.5.1", "Send HELO/EHLO first")
    public static let nestedMail = SMTPReply(503, "5.5.1", "Nested MAIL command")
    public static let needMail = SMTPReply(503, "5.5.1", "Need MAIL command")
    public static let noRecipients = SMTPReply(554, "5.5.1", "No valid recipients")
    public static let authRequired = SMTPReply(530, "5.7.0", "Authentication required")
    public static let authSucceeded = SMTPReply(235, "2.7.0", "Authentication successful")
    public static let authFailed = SMTPReply(535, "5.7.8", "Authentication credentials invalid")
    public static let authCancelled = SMTPReply(501, "5.0.0", "Authentication cancelled")
    public static let authBadEncoding = SMTPReply(501, "5.5.2", "Cannot decode response")
    public static let authEncryptionRequired = SMTPReply(538, "5.7.11", "Encryption required for requested authentication mechanism")
    public static let tooManyErrors = SMTPReply(421, "4.7.0", "Too many errors, closing connection")
    public static let idleTimeout = SMTPReply(421, "4.4.2", "Idle timeout, closing connection")
    public static let bareLineEnding = SMTPReply(550, "5.6.0", "Message refused: bare CR or LF in DATA is not allowed (SMTP smuggling protection)")
    public static let dataLineTooLong = SMTPReply(552, "5.3.4", "Message refused: a line exceeds the line length limit")
    public static let messageTooBig = SMTPReply(552, "5.3.4", "Message size exceeds fixed limit")
    public static let tooManyRecipients = SMTPReply(452, "4.5.3", "Too many recipients")
    public static let insufficientStorage = SMTPReply(452, "4.3.1", "Insufficient system storage")
    public static let localError = SMTPReply(451, "4.3.0", "Local error in processing, try again later")
    public static let shuttingDown = SMTPReply(421, "4.3.2", "Service shutting down, try again later")
}
