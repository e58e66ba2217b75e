/// A command from an SMTP client (RFC 5321 §4.1, RFC 4954 AUTH, RFC 3207 STARTTLS).
public enum SMTPCommand: Equatable, Sendable {
    case helo(String)
    case ehlo(String)
    /// Reverse path without brackets ("" for `<>`) and the ESMTP parameters.
    case mail(String, [SMTPParameter])
    case rcpt(String, [SMTPParameter])
    case data
    case rset
    case noop
    case quit
    case help
    case starttls
    case vrfy(String)
    case auth(mechanism: String, initialResponse: String?)

    /// The verb, for logs and the command table.
    public var verb: String {
        switch self {
        case .helo: return "HELO"
        case .ehlo: return "EHLO"
        case .mail: return "MAIL"
        case .rcpt: return "RCPT"
        case .data: return "DATA"
        case .rset: return "RSET"
        case .noop: return "NOOP"
        case .quit: return "QUIT"
        case .help: return "HELP"
        case .starttls: return "STARTTLS"
        case .vrfy: return "VRFY"
        case .auth: return "AUTH"
        }
    }
}

/// An ESMTP parameter of MAIL or RCPT: `SIZE=1000`, `BODY=8BITMIME`, `SMTPUTF8`.
public struct SMTPParameter: Equatable, Sendable {
    /// The keyword with its ASCII letters upper-cased (`ſize` stays itself and is no `SIZE`).
    public var keyword: String
    public var value: String?

    public init(_ keyword: String, _ value: String? = nil) {
        self.keyword = String(decoding: keyword.utf8.map(asciiUppercased), as: UTF8.self)
        self.value = value
    }
}

/// Parses one command line (without its CRLF). A line that is not a command gives the reply to send.
///
/// Works on the line's UTF-8 bytes: every character the grammar cares about is ASCII. A verb or
/// keyword is recognised only in ASCII (a non-ASCII letter never upper-cases into one), and a
/// delimiter is its byte whatever follows it (a combining mark after `<`, `@` or a space does not
/// make it another character, as it would for Swift's `Character`).
public enum SMTPCommandParser {
    public static func parse(_ line: String) -> Result<SMTPCommand, SMTPReply> {
        var line = line
        return line.withUTF8 { self.parse(bytes: $0) }
    }

    private static func parse(bytes line: UnsafeBufferPointer<UInt8>) -> Result<SMTPCommand, SMTPReply> {
        var start = 0
        while start < line.count && line[start] == space { start += 1 }
        var verbEnd = start
        while verbEnd < line.count && line[verbEnd] != space { verbEnd += 1 }
        let verb = UnsafeBufferPointer(rebasing: line[start..<verbEnd])
        let rest = self.trimmed(UnsafeBufferPointer(rebasing: line[verbEnd...]))
        func text(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }
        func noArguments(_ command: SMTPCommand) -> Result<SMTPCommand, SMTPReply> {
            rest.isEmpty ? .success(command) : .failure(SMTPReply(501, "5.5.4", "Syntax: \(command.verb) takes no arguments"))
        }
        if verb.equalsIgnoringASCIICase("MAIL") {
            return self.path(rest, prefix: "FROM:", allowsNull: true, syntax: SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
                .map { SMTPCommand.mail($0.0, $0.1) }
        }
        if verb.equalsIgnoringASCIICase("RCPT") {
            return self.path(rest, prefix: "TO:", allowsNull: false, syntax: SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
                .map { SMTPCommand.rcpt($0.0, $0.1) }
        }
        if verb.equalsIgnoringASCIICase("DATA") { return noArguments(.data) }
        if verb.equalsIgnoringASCIICase("QUIT") { return noArguments(.quit) }
        if verb.equalsIgnoringASCIICase("RSET") { return noArguments(.rset) }
        if verb.equalsIgnoringASCIICase("STARTTLS") { return noArguments(.starttls) }
        let isHELO = verb.equalsIgnoringASCIICase("HELO")
        if isHELO || verb.equalsIgnoringASCIICase("EHLO") {
            let nameEnd = rest.firstIndex(of: space) ?? rest.count
            guard !rest.isEmpty, nameEnd == rest.count || isHELO else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: \(isHELO ? "HELO" : "EHLO") hostname"))
            }
            let name = text(UnsafeBufferPointer(rebasing: rest[..<nameEnd]))
            return .success(isHELO ? .helo(name) : .ehlo(name))
        }
        if verb.equalsIgnoringASCIICase("NOOP") { return .success(.noop) }
        if verb.equalsIgnoringASCIICase("HELP") { return .success(.help) }
        if verb.equalsIgnoringASCIICase("VRFY") {
            guard !rest.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: VRFY address")) }
            return .success(.vrfy(text(rest)))
        }
        if verb.equalsIgnoringASCIICase("AUTH") {
            let parts = rest.split(separator: space, omittingEmptySubsequences: true)
            guard parts.count == 1 || parts.count == 2 else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
            }
            let mechanism = String(decoding: parts[0].map(asciiUppercased), as: UTF8.self)
            return .success(.auth(mechanism: mechanism,
                                  initialResponse: parts.count == 2 ? text(UnsafeBufferPointer(rebasing: parts[1])) : nil))
        }
        return .failure(.unrecognized)
    }

    /// Parses `FROM:<path> PARAM=VALUE …` (the null path `<>` only for FROM); `syntax` is the reply
    /// for a line of the wrong shape.
    private static func path(
        _ text: UnsafeBufferPointer<UInt8>, prefix: StaticString, allowsNull: Bool, syntax: @autoclosure () -> SMTPReply
    ) -> Result<(String, [SMTPParameter]), SMTPReply> {
        let prefixBytes = UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
        guard text.count >= prefixBytes.count,
              UnsafeBufferPointer(rebasing: text[..<prefixBytes.count]).equalsIgnoringASCIICase(prefixBytes)
        else { return .failure(syntax()) }
        var open = prefixBytes.count
        while open < text.count && text[open] == space { open += 1 }
        guard open < text.count, text[open] == UInt8(ascii: "<") else { return .failure(syntax()) }
        // Find the closing bracket outside a quoted local part.
        var inQuotes = false
        var escaped = false
        var close: Int?
        var index = open + 1
        while index < text.count {
            let c = text[index]
            if escaped { escaped = false } else if c == UInt8(ascii: "\\") { escaped = true } else if c == UInt8(ascii: "\"") {
                inQuotes.toggle()
            } else if c == UInt8(ascii: ">") && !inQuotes {
                close = index
                break
            }
            index += 1
        }
        guard let end = close else { return .failure(syntax()) }
        var addressStart = open + 1
        // Drop an RFC 5321 source route: <@a,@b:user@host>. A route to nobody (<@a:>) is not the
        // null path.
        var routed = false
        if addressStart < end && text[addressStart] == UInt8(ascii: "@"),
           let colon = text[addressStart..<end].firstIndex(of: UInt8(ascii: ":"))
        {
            addressStart = colon + 1
            routed = true
        }
        let address = UnsafeBufferPointer(rebasing: text[addressStart..<end])
        func badAddress() -> SMTPReply {
            allowsNull ? SMTPReply(501, "5.1.7", "Bad sender address syntax")
                : SMTPReply(501, "5.1.3", "Bad recipient address syntax")
        }
        if address.isEmpty {
            if !allowsNull || routed { return .failure(badAddress()) }
        } else if !SMTPAddress.isValid(bytes: address) {
            return .failure(badAddress())
        }
        var parameters: [SMTPParameter] = []
        for word in text[(end + 1)...].split(separator: space) {
            if let eq = word.firstIndex(of: UInt8(ascii: "=")) {
                guard eq > word.startIndex else { return .failure(syntax()) }
                parameters.append(SMTPParameter(String(decoding: word[..<eq], as: UTF8.self),
                                                String(decoding: word[(eq + 1)...], as: UTF8.self)))
            } else {
                parameters.append(SMTPParameter(String(decoding: word, as: UTF8.self)))
            }
        }
        return .success((String(decoding: address, as: UTF8.self), parameters))
    }

    /// Without leading and trailing spaces and tabs.
    private static func trimmed(_ bytes: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        var lower = 0
        var upper = bytes.count
        while lower < upper && (bytes[lower] == space || bytes[lower] == tab) { lower += 1 }
        while upper > lower && (bytes[upper - 1] == space || bytes[upper - 1] == tab) { upper -= 1 }
        return UnsafeBufferPointer(rebasing: bytes[lower..<upper])
    }
}

/// Mailbox syntax checks (RFC 5321 §4.1.2, RFC 6531 for UTF-8).
public enum SMTPAddress {
    /// `local@domain` (or `postmaster`), no controls or unquoted spaces, domain labels of letters,
    /// digits, hyphens (or an address literal in brackets); non-ASCII allowed (checked against SMTPUTF8
    /// by the session).
    public static func isValid(_ address: String) -> Bool {
        var address = address
        return address.withUTF8 { self.isValid(bytes: $0) }
    }

    static func isValid(bytes address: UnsafeBufferPointer<UInt8>) -> Bool {
        guard address.count <= 320 else { return false }
        if address.equalsIgnoringASCIICase("POSTMASTER") { return true }
        guard let at = address.lastIndex(of: UInt8(ascii: "@")) else { return false }
        let local = UnsafeBufferPointer(rebasing: address[..<at])
        let domain = UnsafeBufferPointer(rebasing: address[(at + 1)...])
        guard !local.isEmpty, local.count <= 64, !domain.isEmpty, domain.count <= 255 else { return false }
        let dot = UInt8(ascii: ".")
        if local[0] == UInt8(ascii: "\"") {
            guard local.count >= 2, local[local.count - 1] == UInt8(ascii: "\"") else { return false }
        } else {
            var previous: UInt8 = dot  // a leading dot counts as following one
            for byte in local {
                if byte < 0x21 || byte == 0x7F || self.specials[Int(byte)] { return false }
                if byte == dot && previous == dot { return false }
                previous = byte
            }
            if previous == dot { return false }
        }
        // Bytes of multi-byte UTF-8 sequences are all 0x80 or above.
        for byte in local where byte < 0x20 || byte == 0x7F { return false }
        if domain[0] == UInt8(ascii: "[") { return domain[domain.count - 1] == UInt8(ascii: "]") && domain.count > 2 }
        for label in domain.split(separator: dot, omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.count <= 63, label.first != UInt8(ascii: "-"), label.last != UInt8(ascii: "-")
            else { return false }
            for byte in label {
                let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A)
                    || (byte >= 0x61 && byte <= 0x7A) || byte == UInt8(ascii: "-") || byte > 0x7F
                if !ok { return false }
            }
        }
        return true
    }

    /// Bytes an unquoted local part may not contain besides controls and space: `()<>[]:;@\,"`.
    private static let specials: [Bool] = {
        var table = [Bool](repeating: false, count: 256)
        for byte in "()<>[]:;@\\,\"".utf8 { table[Int(byte)] = true }
        return table
    }()

    public static func isASCII(_ address: String) -> Bool { address.utf8.allSatisfy { $0 < 0x80 } }
}

private let space = UInt8(ascii: " ")
private let tab = UInt8(ascii: "\t")

private func asciiUppercased(_ byte: UInt8) -> UInt8 {
    byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 0x20 : byte
}

extension UnsafeBufferPointer<UInt8> {
    /// `upper` is upper-case ASCII; true when these bytes are it, ignoring ASCII case.
    func equalsIgnoringASCIICase(_ upper: StaticString) -> Bool {
        self.equalsIgnoringASCIICase(UnsafeBufferPointer(start: upper.utf8Start, count: upper.utf8CodeUnitCount))
    }

    func equalsIgnoringASCIICase(_ upper: UnsafeBufferPointer<UInt8>) -> Bool {
        guard self.count == upper.count else { return false }
        for index in 0..<self.count where asciiUppercased(self[index]) != upper[index] { return false }
        return true
    }
}
