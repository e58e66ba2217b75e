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

    /// The rules one byte at a time, as plainly as they can be written: outcome, body, leftover,
    /// 8-bit flag and counted body bytes for `bytes`, or nil when the end of data is not in them.
    /// Over `maxSize` the body is dropped whatever else is wrong with it.
    static func reference(_ bytes: [UInt8], maxLineLength: Int, maxSize: Int)
        -> (Fed, eightBit: Bool, received: Int)?
    {
        let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A, dot = UInt8(ascii: ".")
        var body: [UInt8] = []
        var atLineStart = true, lineHadDot = false, bare = false, long = false, eightBit = false
        var lineLength = 0
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == cr && i + 1 == bytes.count { return nil }
            if b == cr && bytes[i + 1] == lf {
                if lineHadDot && lineLength == 1 {
                    let tooLarge = body.count > maxSize
                    let outcome: SMTPDataDecoder.Outcome =
                        tooLarge ? .tooLarge : bare ? .bareLineEnding : long ? .lineTooLong : .accepted
                    let fed = Fed(outcome: outcome, body: tooLarge ? "" : String(decoding: body, as: UTF8.self),
                                  leftover: String(decoding: bytes[(i + 2)...], as: UTF8.self))
                    return (fed, eightBit, body.count)
                }
                body += [cr, lf]
                atLineStart = true
                lineHadDot = false
                lineLength = 0
                i += 2
                continue
            }
            if b == cr || b == lf {
                bare = true
                body.append(b)
                atLineStart = false
                lineLength += 1
            } else if atLineStart && b == dot {
                atLineStart = false
                lineHadDot = true
                lineLength = 1
            } else {
                atLineStart = false
                if b >= 0x80 { eightBit = true }
                lineLength += 1
                if lineLength > maxLineLength - 2 { long = true }
                body.append(b)
            }
            i += 1
        }
        return nil
    }

    /// Random messages built from the bytes that matter (CR, LF, dot, 8-bit) among runs of plain
    /// text of every length, so that each special byte lands at every offset of an 8-byte word;
    /// fed whole and in random chunks, the decoder gives what `reference` gives.
    @Test func randomMessagesDecodeAsTheRulesSay() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Int(state % UInt64(bound))
        }
        let pieces: [[UInt8]] = [[0x0D, 0x0A], [0x0D], [0x0A], [UInt8(ascii: ".")], [0xC3, 0xA9], [0x0D, 0x0A, 0x2E]]
        for round in 0..<2000 {
            var bytes: [UInt8] = []
            for _ in 0..<next(12) {
                bytes += [UInt8](repeating: UInt8(ascii: "a") + UInt8(next(26)), count: next(40))
                bytes += pieces[next(pieces.count)]
            }
            bytes += Array("\r\n.\r\nNEXT".utf8)
            let maxLineLength = 10 + next(40)
            // Mostly no size limit that matters; one round in four a limit near the body's size.
            let maxSize = next(4) == 0 ? max(0, bytes.count - 20 + next(20)) : 1 << 20
            guard let expected = Self.reference(bytes, maxLineLength: maxLineLength, maxSize: maxSize) else {
                Issue.record("round \(round): the reference found no end")
                continue
            }
            let text = String(decoding: bytes, as: UTF8.self)
            for chunk in [nil, 1 + next(16), 1 + next(64)] {
                var decoder = SMTPDataDecoder(maxSize: maxSize, maxLineLength: maxLineLength)
                var index = 0
                var outcome: SMTPDataDecoder.Outcome?
                var leftover: [UInt8] = []
                while index < bytes.count && outcome == nil {
                    let end = min(bytes.count, index + (chunk ?? bytes.count))
                    var buffer = ByteBuffer(bytes: bytes[index..<end])
                    outcome = decoder.feed(&buffer)
                    leftover = Array(buffer.readableBytesView) + bytes[end...]
                    index = end
                }
                let fed = Fed(outcome: outcome, body: String(buffer: decoder.body),
                              leftover: String(decoding: leftover, as: UTF8.self))
                #expect(fed == expected.0, "round \(round), chunk \(String(describing: chunk)): \(text.debugDescription)")
                #expect(decoder.sawEightBit == expected.eightBit, "round \(round)")
                #expect(decoder.receivedBytes == expected.received, "round \(round)")
            }
        }
    }

    @Test func wordCheckFindsEverySpecialByteAtEveryOffset() {
        let plain = UInt64(0x6161_6161_6161_6161)
        #expect(!SMTPDataDecoder.hasLineEndOrEightBit(plain))
        #expect(!SMTPDataDecoder.hasLineEndOrEightBit(0x0B0B_0C0C_0E0E_0909))
        for shift in stride(from: 0, to: 64, by: 8) {
            for special: UInt64 in [0x0D, 0x0A, 0x80, 0xFF, 0xC3] {
                let word = (plain & ~(0xFF << UInt64(shift))) | (special << UInt64(shift))
                #expect(SMTPDataDecoder.hasLineEndOrEightBit(word), "byte \(special) at bit \(shift)")
            }
        }
    }
}
