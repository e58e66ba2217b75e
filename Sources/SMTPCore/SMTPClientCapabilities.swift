/// What a server announced in its EHLO reply (RFC 5321 §4.1.1.1 and the extensions' RFCs). A HELO
/// session has none of them.
public struct SMTPClientCapabilities: Equatable, Sendable {
    /// EHLO was answered with 250 (false after a HELO fallback).
    public var esmtp = false
    /// RFC 2920.
    public var pipelining = false
    /// RFC 3207.
    public var startTLS = false
    /// RFC 6152.
    public var eightBitMIME = false
    /// RFC 6531.
    public var smtputf8 = false
    /// RFC 2034.
    public var enhancedStatusCodes = false
    /// RFC 1870: nil when SIZE is not announced; 0 when announced without a limit.
    public var size: Int?
    /// RFC 4954 mechanisms, upper-cased.
    public var authMechanisms: Set<String> = []

    public init() {}

    /// Reads the lines of a 250 reply to EHLO; the first line is the server's name and is skipped.
    public init(ehloLines: [String]) {
        self.esmtp = true
        for line in ehloLines.dropFirst() {
            let words = line.split(separator: " ").map { $0.uppercased() }
            guard let keyword = words.first else { continue }
            switch keyword {
            case "PIPELINING": self.pipelining = true
            case "STARTTLS": self.startTLS = true
            case "8BITMIME": self.eightBitMIME = true
            case "SMTPUTF8": self.smtputf8 = true
            case "ENHANCEDSTATUSCODES": self.enhancedStatusCodes = true
            case "SIZE": self.size = words.count > 1 ? Int(words[1]) ?? 0 : 0
            case "AUTH": self.authMechanisms.formUnion(words.dropFirst())
            default:
                // Old servers announce `AUTH=LOGIN PLAIN`.
                if keyword.hasPrefix("AUTH=") {
                    self.authMechanisms.insert(String(keyword.dropFirst(5)))
                    self.authMechanisms.formUnion(words.dropFirst())
                }
            }
        }
    }
}
