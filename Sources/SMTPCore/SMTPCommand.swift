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
    /// Upper-cased keyword.
    public var keyword: String
    public var value: String?

    public init(_ keyword: String, _ value: String? = nil) {
        self.keyword = keyword.uppercased()
        self.value = value
    }
}

/// Parses one command line (without its CRLF). A line that is not a command gives the reply to send.
public enum SMTPCommandParser {
    public static func parse(_ line: String) -> Result<SMTPCommand, SMTPReply> {
        let trimmed = line.drop { $0 == " " }
        let verbEnd = trimmed.firstIndex(of: " ") ?? trimmed.endIndex
        let verb = trimmed[..<verbEnd].uppercased()
        let rest = trimmed[verbEnd...].trimmingSpaces()
        switch verb {
        case "HELO", "EHLO":
            guard !rest.isEmpty, !rest.contains(" ") || verb == "HELO" else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb) hostname"))
            }
            let name = String(rest.split(separator: " ").first ?? "")
            return .success(verb == "HELO" ? .helo(name) : .ehlo(name))
        case "MAIL":
            return self.path(rest, prefix: "FROM:", syntax: SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
                .map { SMTPCommand.mail($0.0, $0.1) }
        case "RCPT":
            return self.path(rest, prefix: "TO:", syntax: SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>"))
                .map { SMTPCommand.rcpt($0.0, $0.1) }
        case "DATA", "RSET", "QUIT", "STARTTLS":
            guard rest.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: \(verb) takes no arguments")) }
            switch verb {
            case "DATA": return .success(.data)
            case "RSET": return .success(.rset)
            case "QUIT": return .success(.quit)
            default: return .success(.starttls)
            }
        case "NOOP": return .success(.noop)
        case "HELP": return .success(.help)
        case "VRFY":
            guard !rest.isEmpty else { return .failure(SMTPReply(501, "5.5.4", "Syntax: VRFY address")) }
            return .success(.vrfy(rest))
        case "AUTH":
            let parts = rest.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 1 || parts.count == 2 else {
                return .failure(SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
            }
            return .success(.auth(mechanism: parts[0].uppercased(), initialResponse: parts.count == 2 ? String(parts[1]) : nil))
        default:
            return .failure(.unrecognized)
        }
    }

    /// Parses `FROM:<path> PARAM=VALUE …` (the null path `<>` only for FROM); `syntax` is the reply
    /// for a line of the wrong shape.
    private static func path(_ text: String, prefix: String, syntax: @autoclosure () -> SMTPReply)
        -> Result<(String, [SMTPParameter]), SMTPReply>
    {
        let allowEmpty = prefix == "FROM:"
        guard text.hasPrefixIgnoringASCIICase(prefix) else { return .failure(syntax()) }
        let afterPrefix = text.dropFirst(prefix.count).drop { $0 == " " }
        guard afterPrefix.first == "<" else { return .failure(syntax()) }
        // Find the closing bracket outside a quoted local part.
        var inQuotes = false
        var escaped = false
        var close: Substring.Index?
        var index = afterPrefix.index(after: afterPrefix.startIndex)
        while index < afterPrefix.endIndex {
            let c = afterPrefix[index]
            if escaped { escaped = false } else if c == "\\" { escaped = true } else if c == "\"" { inQuotes.toggle() } else if c == ">" && !inQuotes {
                close = index
                break
            }
            index = afterPrefix.index(after: index)
        }
        guard let end = close else { return .failure(syntax()) }
        var address = String(afterPrefix[afterPrefix.index(after: afterPrefix.startIndex)..<end])
        // Drop an RFC 5321 source route: <@a,@b:user@host>.
        if address.hasPrefix("@"), let colon = address.firstIndex(of: ":") {
            address = String(address[address.index(after: colon)...])
        }
        func badAddress() -> SMTPReply {
            allowEmpty ? SMTPReply(501, "5.1.7", "Bad sender address syntax")
                : SMTPReply(501, "5.1.3", "Bad recipient address syntax")
        }
        if address.isEmpty {
            if !allowEmpty { return .failure(badAddress()) }
        } else if !SMTPAddress.isValid(address) {
            return .failure(badAddress())
        }
        var parameters: [SMTPParameter] = []
        for word in afterPrefix[afterPrefix.index(after: end)...].split(separator: " ") {
            if let eq = word.firstIndex(of: "=") {
                let key = word[..<eq]
                guard !key.isEmpty else { return .failure(syntax()) }
                parameters.append(SMTPParameter(String(key), String(word[word.index(after: eq)...])))
            } else {
                parameters.append(SMTPParameter(String(word)))
            }
        }
        return .success((address, parameters))
    }
}

/// Mailbox syntax checks (RFC 5321 §4.1.2, RFC 6531 for UTF-8).
public enum SMTPAddress {
    /// `local@domain` (or `postmaster`), no controls or unquoted spaces, domain labels of letters,
    /// digits, hyphens (or an address literal in brackets); non-ASCII allowed (checked against SMTPUTF8
    /// by the session).
    public static func isValid(_ address: String) -> Bool {
        guard address.utf8.count <= 320 else { return false }
        if address.utf8.count == 10 && address.hasPrefixIgnoringASCIICase("POSTMASTER") { return true }
        guard let at = address.lastIndex(of: "@") else { return false }
        let local = address[..<at]
        let domain = address[address.index(after: at)...]
        guard !local.isEmpty, local.utf8.count <= 64, !domain.isEmpty, domain.utf8.count <= 255 else { return false }
        if local.first == "\"" {
            guard local.count >= 2, local.last == "\"" else { return false }
        } else {
            for u in local.unicodeScalars {
                if u.value < 0x21 || u.value == 0x7F { return false }
                if "()<>[]:;@\\,\"".unicodeScalars.contains(u) { return false }
            }
            if local.hasPrefix(".") || local.hasSuffix(".") || local.contains("..") { return false }
        }
        for u in local.unicodeScalars where u.value < 0x20 || u.value == 0x7F { return false }
        if domain.first == "[" { return domain.last == "]" && domain.count > 2 }
        for label in domain.split(separator: ".", omittingEmptySubsequences: false) {
            guard !label.isEmpty, label.utf8.count <= 63, label.first != "-", label.last != "-" else { return false }
            for u in label.unicodeScalars {
                let ok = (u.value >= 0x30 && u.value <= 0x39) || (u.value >= 0x41 && u.value <= 0x5A)
                    || (u.value >= 0x61 && u.value <= 0x7A) || u == "-" || u.value > 0x7F
                if !ok { return false }
            }
        }
        return true
    }

    public static func isASCII(_ address: String) -> Bool { address.utf8.allSatisfy { $0 < 0x80 } }
}

extension StringProtocol {
    /// `prefix` is upper-case ASCII; compares without making an upper-cased copy of `self`.
    func hasPrefixIgnoringASCIICase(_ prefix: String) -> Bool {
        var bytes = self.utf8.makeIterator()
        for expected in prefix.utf8 {
            guard var byte = bytes.next() else { return false }
            if byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") { byte -= 0x20 }
            if byte != expected { return false }
        }
        return true
    }

    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
