import NIOCore
import Testing

@testable import SMTPCore

/// DATA framing: the end is CRLF.CRLF and nothing else, dot-stuffing is undone exactly (RFC 5321 §4.5.2).
@Suite struct SMTPDataDecoderTests {
    struct Fed: Equatable {
        var outcome: SMTPDataDecoder.Outcome?
        var body: String
        var leftover: String
    }

    /// Feeds `text` in chunks of `chunk` bytes (all at once when nil) and stops at the outcome.
    static func decode(_ text: String, chunk: Int? = nil, maxSize: Int = 1 << 20, maxLineLength: Int = 1000) -> Fed {
        var decoder = SMTPDataDecoder(maxSize: maxSize, maxLineLength: maxLineLength)
        let bytes = Array(text.utf8)
        let size = chunk ?? max(1, bytes.count)
        var index = 0
        var outcome: SMTPDataDecoder.Outcome?
        var leftover = ""
        while index < bytes.count && outcome == nil {
            let end = min(bytes.count, index + size)
            var buffer = ByteBuffer(bytes: bytes[index..<end])
            outcome = decoder.feed(&buffer)
            if outcome == nil { #expect(buffer.readableBytes == 0, "an unfinished feed consumes everything") }
            leftover = String(buffer: buffer) + String(decoding: bytes[end...], as: UTF8.self)
            index = end
        }
        return Fed(outcome: outcome, body: String(buffer: decoder.body), leftover: leftover)
    }

    @Test func endsAtCRLFDotCRLFAndLeavesTheRest() {
        let fed = Self.decode("Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        #expect(fed == Fed(outcome: .accepted, body: "Subject: x\r\n\r\nhello\r\n", leftover: "QUIT\r\n"))
    }

    @Test func emptyMessage() {
        #expect(Self.decode(".\r\n") == Fed(outcome: .accepted, body: "", leftover: ""))
    }

    @Test func withoutTheEndLineItWaits() {
        #expect(Self.decode("hello\r\n").outcome == nil)
        #expect(Self.decode("hello\r\n.").outcome == nil)
        #expect(Self.decode("hello\r\n.\r").outcome == nil)
        #expect(Self.decode("hello.\r\n").outcome == nil)
    }

    @Test(arguments: [
        ("..\r\n", ".\r\n"),
        ("...\r\n", "..\r\n"),
        ("..leading dot\r\n", ".leading dot\r\n"),
        (".unstuffed\r\n", "unstuffed\r\n"),
        ("a.b..c\r\n", "a.b..c\r\n"),
        (" .\r\n", " .\r\n"),
        ("x\r\n..\r\n..\r\n", "x\r\n.\r\n.\r\n"),
        ("\r\n\r\n", "\r\n\r\n"),
    ])
    func dotStuffingIsUndoneExactly(input: String, body: String) {
        #expect(Self.decode(input + ".\r\n") == Fed(outcome: .accepted, body: body, leftover: ""))
        #expect(Self.decode(input + ".\r\n", chunk: 1) == Fed(outcome: .accepted, body: body, leftover: ""))
    }

    static let smugglingVariants = ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r.\r\n", "\r\n\r.\r\n", "\r\n\n.\r\n",
                                    "\r\n.\r\r\n", "\n.\r\r\n", "\r\n.\n\r\n"]

    @Test(arguments: SMTPDataDecoderTests.smugglingVariants)
    func bareLineEndingsNeverEnd(_ variant: String) {
        let text = "first" + variant + "MAIL FROM:<evil@example.com>\r\n"
        for chunk in [nil, 1, 2, 3] as [Int?] {
            let fed = Self.decode(text, chunk: chunk)
            #expect(fed.outcome == nil, "\(variant.debugDescription) ended DATA (chunk \(String(describing: chunk)))")
            let ended = Self.decode(text + ".\r\nNOOP\r\n", chunk: chunk)
            #expect(ended.outcome == .bareLineEnding)
            #expect(ended.leftover == "NOOP\r\n")
        }
    }

    @Test(arguments: SMTPDataDecoderTests.smugglingVariants)
    func bareLineEndingsAtTheStartNeverEnd(_ variant: String) {
        // The same right after the 354, where the decoder is at the start of a line.
        let text = "\r\n" + variant + "x\r\n"
        #expect(Self.decode(text).outcome == nil)
        #expect(Self.decode(text + ".\r\n").outcome == .bareLineEnding)
    }

    @Test func bareCRorLFAnywhereRefusesTheMessage() {
        #expect(Self.decode("a\rb\r\n.\r\n").outcome == .bareLineEnding)
        #expect(Self.decode("a\nb\r\n.\r\n").outcome == .bareLineEnding)
        #expect(Self.decode("ab\r\r\n.\r\n").outcome == .bareLineEnding)
        #expect(Self.decode("ab\r\n\nx\r\n.\r\n").outcome == .bareLineEnding)
    }

    @Test func sizeLimit() {
        let line = String(repeating: "x", count: 8) + "\r\n"  // 10 bytes
        #expect(Self.decode(String(repeating: line, count: 10) + ".\r\n", maxSize: 100).outcome == .accepted)
        var decoder = SMTPDataDecoder(maxSize: 100, maxLineLength: 1000)
        var buffer = ByteBuffer(string: String(repeating: line, count: 11) + ".\r\nNEXT")
        #expect(decoder.feed(&buffer) == .tooLarge)
        #expect(decoder.receivedBytes == 110)
        #expect(decoder.body.readableBytes == 0, "nothing past the limit is kept")
        #expect(String(buffer: buffer) == "NEXT")
    }

    @Test func sizeLimitWinsOverBareLineEndings() {
        let text = "a\nb" + String(repeating: "x", count: 200) + "\r\n.\r\n"
        #expect(Self.decode(text, maxSize: 100).outcome == .tooLarge)
    }

    @Test func lineLengthLimit() {
        // maxLineLength counts the CRLF.
        let atLimit = String(repeating: "x", count: 98) + "\r\n.\r\n"
        let over = String(repeating: "x", count: 99) + "\r\n.\r\n"
        #expect(Self.decode(atLimit, maxLineLength: 100).outcome == .accepted)
        #expect(Self.decode(over, maxLineLength: 100).outcome == .lineTooLong)
        #expect(Self.decode(".." + String(repeating: "x", count: 97) + "\r\n.\r\n", maxLineLength: 100).outcome
            == .lineTooLong, "a stuffing dot counts, as on the wire")
        #expect(Self.decode(String(repeating: "x\r\n", count: 500) + ".\r\n", maxLineLength: 100).outcome == .accepted)
    }

    @Test func eightBitIsNoted() {
        var decoder = SMTPDataDecoder(maxSize: 1000, maxLineLength: 1000)
        var buffer = ByteBuffer(string: "plain\r\n.\r\n")
        _ = decoder.feed(&buffer)
        #expect(!decoder.sawEightBit)
        var other = SMTPDataDecoder(maxSize: 1000, maxLineLength: 1000)
        var eight = ByteBuffer(string: "caf\u{e9}\r\n.\r\n")
        #expect(other.feed(&eight) == .accepted)
        #expect(other.sawEightBit)
    }

    static let dripInputs = [
        "Subject: a\r\n\r\nline one\r\n..dot\r\n.\r\n",
        "\r\n.\r\n",
        "x\r\n.y\r\n.\r\nrest",
        "a\r\r\n.\r\n",
        "first\r\n\r.\r\nsecond\r\n.\r\n",
        String(repeating: "long line ", count: 20) + "\r\n.\r\n",
    ]

    @Test(arguments: SMTPDataDecoderTests.dripInputs)
    func oneByteAtATimeIsTheSameAsAllAtOnce(_ input: String) {
        let whole = Self.decode(input, maxLineLength: 100)
        #expect(whole.outcome != nil)
        for chunk in [1, 2, 3, 5] {
            #expect(Self.decode(input, chunk: chunk, maxLineLength: 100) == whole, "chunk \(chunk)")
        }
    }
}
