import Testing

@testable import SMTPCore

/// One command line in, one `SMTPCommand` (or the reply to send) out.
@Suite struct SMTPCommandParserTests {
    static func parse(_ line: String) -> SMTPCommand? {
        if case .success(let command) = SMTPCommandParser.parse(line) { return command }
        return nil
    }

    static func refusal(_ line: String) -> SMTPReply? {
        if case .failure(let reply) = SMTPCommandParser.parse(line) { return reply }
        return nil
    }

    @Test(arguments: [
        ("HELO client.example", SMTPCommand.helo("client.example")),
        ("EHLO client.example", .ehlo("client.example")),
        ("ehlo [192.0.2.1]", .ehlo("[192.0.2.1]")),
        ("HELO client.example trailing words", .helo("client.example")),
        ("MAIL FROM:<a@example.com>", .mail("a@example.com", [])),
        ("mail from:<a@example.com>", .mail("a@example.com", [])),
        ("MAIL FROM: <a@example.com>", .mail("a@example.com", [])),
        ("MAIL FROM:<>", .mail("", [])),
        ("MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME SMTPUTF8",
         .mail("a@example.com",
               [SMTPParameter("SIZE", "1000"), SMTPParameter("BODY", "8BITMIME"), SMTPParameter("SMTPUTF8")])),
        ("MAIL FROM:<a@example.com> size=10", .mail("a@example.com", [SMTPParameter("SIZE", "10")])),
        ("RCPT TO:<b@example.com>", .rcpt("b@example.com", [])),
        ("RCPT TO:<postmaster>", .rcpt("postmaster", [])),
        ("RCPT TO:<@relay.example,@other.example:b@example.com>", .rcpt("b@example.com", [])),
        ("RCPT TO:<\"odd>local\"@example.com>", .rcpt("\"odd>local\"@example.com", [])),
        ("RCPT TO:<b@[192.0.2.1]>", .rcpt("b@[192.0.2.1]", [])),
        ("DATA", .data), ("data", .data), ("RSET", .rset), ("QUIT", .quit), ("STARTTLS", .starttls),
        ("NOOP", .noop), ("NOOP anything goes", .noop), ("HELP", .help), ("HELP MAIL", .help),
        ("VRFY alice", .vrfy("alice")),
        ("AUTH PLAIN", .auth(mechanism: "PLAIN", initialResponse: nil)),
        ("AUTH plain AGFAYgBj", .auth(mechanism: "PLAIN", initialResponse: "AGFAYgBj")),
        ("AUTH LOGIN =", .auth(mechanism: "LOGIN", initialResponse: "=")),
        ("AUTH CRAM-MD5", .auth(mechanism: "CRAM-MD5", initialResponse: nil)),
        ("  NOOP", .noop),
        ("QUIT  ", .quit),
    ])
    func parses(_ line: String, _ command: SMTPCommand) {
        #expect(Self.parse(line) == command)
    }

    @Test(arguments: [
        ("HELO", SMTPReply(501, "5.5.4", "Syntax: HELO hostname")),
        ("EHLO", SMTPReply(501, "5.5.4", "Syntax: EHLO hostname")),
        ("EHLO two words", SMTPReply(501, "5.5.4", "Syntax: EHLO hostname")),
        ("MAIL", SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")),
        ("MAIL TO:<a@example.com>", SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")),
        ("MAIL FROM:a@example.com", SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")),
        ("MAIL FROM:<a@example.com", SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")),
        ("MAIL FROM:<a@example.com> =x", SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>")),
        ("MAIL FROM:<no at sign>", SMTPReply(501, "5.1.7", "Bad sender address syntax")),
        ("RCPT FROM:<b@example.com>", SMTPReply(501, "5.5.4", "Syntax: RCPT TO:<address>")),
        ("RCPT TO:<>", SMTPReply(501, "5.1.3", "Bad recipient address syntax")),
        ("RCPT TO:<b@exa_mple.com>", SMTPReply(501, "5.1.3", "Bad recipient address syntax")),
        ("MAIL FROM:<@relay.example:>", SMTPReply(501, "5.1.7", "Bad sender address syntax")),
        ("RCPT TO:<@relay.example:>", SMTPReply(501, "5.1.3", "Bad recipient address syntax")),
        ("DATA now", SMTPReply(501, "5.5.4", "Syntax: DATA takes no arguments")),
        ("RSET x", SMTPReply(501, "5.5.4", "Syntax: RSET takes no arguments")),
        ("QUIT x", SMTPReply(501, "5.5.4", "Syntax: QUIT takes no arguments")),
        ("STARTTLS x", SMTPReply(501, "5.5.4", "Syntax: STARTTLS takes no arguments")),
        ("VRFY", SMTPReply(501, "5.5.4", "Syntax: VRFY address")),
        ("AUTH", SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")),
        ("AUTH PLAIN a b", SMTPReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")),
        ("XYZZY", SMTPReply.unrecognized),
        ("", SMTPReply.unrecognized),
        ("MAILFROM:<a@example.com>", SMTPReply.unrecognized),
    ])
    func refuses(_ line: String, _ reply: SMTPReply) {
        #expect(Self.refusal(line) == reply)
    }

    @Test func verbs() {
        let commands: [SMTPCommand] = [
            .helo("h"), .ehlo("h"), .mail("", []), .rcpt("b@c.d", []), .data, .rset, .noop, .quit, .help, .starttls,
            .vrfy("x"), .auth(mechanism: "PLAIN", initialResponse: nil),
        ]
        #expect(commands.map(\.verb) == ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "HELP",
                                         "STARTTLS", "VRFY", "AUTH"])
    }

    /// Verbs and keywords are matched in ASCII only: a letter whose Unicode upper case is ASCII
    /// (dotless ı → I, long ſ → S) does not make a command or a parameter keyword.
    @Test(arguments: ["qu\u{131}t", "r\u{17F}et", "MA\u{131}L FROM:<a@example.com>"])
    func verbsAreASCII(_ line: String) {
        #expect(Self.refusal(line) == .unrecognized)
    }

    @Test func keywordsAreASCII() {
        #expect(Self.parse("MAIL FROM:<a@example.com> \u{17F}IZE=1") == .mail("a@example.com", [SMTPParameter("\u{17F}IZE", "1")]))
        #expect(SMTPParameter("\u{17F}ize").keyword == "\u{17F}IZE")
        #expect(SMTPParameter("stra\u{DF}e").keyword == "STRA\u{DF}E")
    }

    /// Delimiters are bytes: a combining mark after one does not hide it.
    @Test func combiningMarksDoNotHideDelimiters() {
        #expect(Self.refusal("EHLO a \u{301}b") == SMTPReply(501, "5.5.4", "Syntax: EHLO hostname"))
        #expect(Self.refusal("MAIL FROM:\u{301}<a@example.com>") == SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        #expect(!SMTPAddress.isValid(".\u{301}a@example.com"))
        #expect(SMTPAddress.isValid("a@[\u{301}]"))
    }

    @Test(arguments: [
        ("RCPT TO:<\"a\\\">\"@example.com>", SMTPCommand.rcpt("\"a\\\">\"@example.com", [])),
        ("MAIL FROM:<a@example.com> SIZE=", .mail("a@example.com", [SMTPParameter("SIZE", "")])),
        ("QUIT \t", .quit),
        ("QUIT\t", nil),  // a verb ends at a space only
        ("\tQUIT", nil),
        ("RCPT TO:<j\u{F6}s\u{E9}@b\u{FC}cher.example>", .rcpt("j\u{F6}s\u{E9}@b\u{FC}cher.example", [])),
    ] as [(String, SMTPCommand?)])
    func edgesOfTheGrammar(_ line: String, _ command: SMTPCommand?) {
        #expect(Self.parse(line) == command)
    }

    @Test func mailFromWithNothingAfterIsASyntaxError() {
        #expect(Self.refusal("MAIL FROM:") == SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        #expect(Self.refusal("MAIL FROM: ") == SMTPReply(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
    }

    @Test func parameterKeywordsAreUpperCased() {
        #expect(SMTPParameter("body", "8bitmime") == SMTPParameter("BODY", "8bitmime"))
    }

    @Test(arguments: ["a@example.com", "first.last+tag@sub.example.com", "postmaster", "PostMaster",
                      "\"quoted local\"@example.com", "a@[192.0.2.1]", "a@[IPv6:2001:db8::1]", "jösé@example.com",
                      "用户@例子.广告", "a@xn--bcher-kva.example", "a-b@a-b.example"])
    func validAddresses(_ address: String) {
        #expect(SMTPAddress.isValid(address))
    }

    @Test(arguments: ["", "a", "@example.com", "a@", "a@@example.com", "a b@example.com", ".a@example.com",
                      "a.@example.com", "a..b@example.com", "a@-example.com", "a@example-.com", "a@exa mple.com",
                      "a@example..com", "a@[]", "a(b)@example.com", "\"@example.com", "a@example.com.", "a@b_c.example", "a\u{1}@example.com",
                      String(repeating: "l", count: 65) + "@example.com",
                      "a@" + String(repeating: "d", count: 64) + ".example"])
    func invalidAddresses(_ address: String) {
        #expect(!SMTPAddress.isValid(address))
    }

    @Test func asciiCheck() {
        #expect(SMTPAddress.isASCII("a@example.com"))
        #expect(!SMTPAddress.isASCII("jösé@example.com"))
    }
}
