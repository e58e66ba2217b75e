import Foundation
import Testing

@testable import IPC

/// The spool's envelope writer must write exactly what `JSONEncoder` writes (files written before
/// it, and by it, read the same), and read back with `JSONDecoder` to the same envelope. Its reader
/// must give what `JSONDecoder` gives, or nil (the spool then uses `JSONDecoder`).
@Suite struct EnvelopeJSONTests {
    static func encoderOutput(_ envelope: Envelope) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(envelope))
    }

    static var envelopes: [Envelope] {
        let fresh = Envelope(id: "0A1B2C3D4E5F60000012345001", sender: "a@example.com", recipients: ["b@example.net"],
                             receivedAt: 1_764_449_000.123456, client: "127.0.0.1:54321", helo: "client.example")
        var nullSender = Envelope(id: "X", sender: "", recipients: ["x@example.net", "y@example.net", "z@example.org"],
                                  receivedAt: 1_700_000_000, client: "[::1]:25", helo: "", authIdentity: "app",
                                  smtputf8: true, eightBit: true, size: 4_830)
        nullSender.recipients[1].state = .delivered
        nullSender.recipients[1].reply = "250 2.0.0 Ok: queued as 4Q"
        nullSender.recipients[2].state = .failed
        nullSender.recipients[2].reply = "550 5.1.1 <z@example.org>: \"no\" such \\ user\r\n\ttab/slash"
        var retried = fresh
        retried.attempts = 3
        retried.nextAttemptAt = 1_764_449_123.9876543
        retried.lastError = "421 4.7.0 try later \u{1}\u{8}\u{c}\u{1f}\u{7f} é 😀 \u{2028}"
        retried.history = [
            Envelope.Attempt(at: 1_764_449_001, route: "primary", recipients: ["b@example.net"], reply: "421 busy", durationMs: 0),
            Envelope.Attempt(at: 0.1, route: "backup", recipients: [], reply: "", durationMs: -1),
        ]
        var unicode = fresh
        unicode.sender = "ü@exämple.com"
        unicode.recipients = [Envelope.Recipient(address: "δοκιμή@παράδειγμα.δοκιμή")]
        unicode.receivedAt = 1e21
        var empty = retried
        empty.recipients = []
        empty.history[0].recipients = []
        return [fresh, nullSender, retried, unicode, empty]
    }

    @Test(arguments: Self.envelopes)
    func writesWhatJSONEncoderWrites(envelope: Envelope) throws {
        let ours = EnvelopeJSON.encode(envelope)
        #expect(String(decoding: ours, as: UTF8.self) == String(decoding: try Self.encoderOutput(envelope), as: UTF8.self))
        #expect(try JSONDecoder().decode(Envelope.self, from: Data(ours)) == envelope)
    }

    // MARK: decode

    static func decode(_ bytes: [UInt8]) -> Envelope? { bytes.withUnsafeBytes { EnvelopeJSON.decode($0) } }

    static func decoderOutput(_ bytes: [UInt8]) -> Envelope? { try? JSONDecoder().decode(Envelope.self, from: Data(bytes)) }

    /// The writer's envelopes, and more to read back: every optional set, escapes, non-ASCII, and
    /// numbers at their extremes.
    static var decodeEnvelopes: [Envelope] {
        var full = Self.envelopes[2]
        full.authIdentity = "user/name \"quoted\" \\ back"
        full.recipients = [
            Envelope.Recipient(address: "a@example.net"),
            Envelope.Recipient(address: "b@example.net", state: .delivered, reply: "250 ok"),
            Envelope.Recipient(address: "c@example.net", state: .failed, reply: "550 no\u{0}\u{1b}"),
            Envelope.Recipient(address: "d@example.net", state: .pending, reply: "451 later"),
            Envelope.Recipient(address: "é@中文.example", state: .delivered),
            Envelope.Recipient(address: "😀@example.org", state: .failed),
        ]
        full.size = Int.max
        full.attempts = Int.min
        full.history.append(Envelope.Attempt(at: -0.5, route: "a/b", recipients: ["😀", "中文"], reply: "\n", durationMs: Int.max))
        var numbers: [Envelope] = []
        for (index, value) in [1_764_451_200.123456, 0, -0.0, -0.5, 1e-7, .leastNonzeroMagnitude, 2.2250738585072014e-308, 1.7976931348623157e308,
                               -1e300, 123_456_789.987654321, 0.1, 1 / 3.0].enumerated() {
            var envelope = full
            envelope.receivedAt = value
            envelope.nextAttemptAt = -value
            envelope.history[0].at = value / 7
            envelope.size = index
            envelope.attempts = -index
            numbers.append(envelope)
        }
        return Self.envelopes + [full] + numbers
    }

    @Test(arguments: Self.decodeEnvelopes)
    func readsWhatItWrites(envelope: Envelope) throws {
        let json = EnvelopeJSON.encode(envelope)
        let decoded = try #require(Self.decode(json))
        #expect(decoded == envelope)
        #expect(decoded == Self.decoderOutput(json))
        #expect(decoded.receivedAt.sign == envelope.receivedAt.sign)
    }

    /// The same JSON as the writer's, in another layout.
    static let layouts: [String] = [
        // Compact, other key order, explicit nulls, escapes written by hand (surrogate pair for 😀).
        #"{"smtputf8":true,"size":0,"sender":"\u00e9\u4E2D\u6587\ud83d\ude00","recipients":[{"state":"failed","address":"a\/b","reply":null},{"reply":"x","address":"\"\\\b\f\n\r\t\u0000\u001f","state":"delivered"}],"receivedAt":-0,"nextAttemptAt":null,"lastError":null,"id":"é中文😀","history":[{"route":"r","reply":"","recipients":[],"durationMs":-0,"at":1.5E+3}],"helo":"","eightBit":false,"client":"","authIdentity":null,"attempts":9223372036854775807}"#,
        // Whitespace of every kind around everything.
        " \t\r\n{ \"attempts\" :\t1 ,\r\n \"client\" : \"c\" , \"eightBit\" : true , \"helo\" : \"h\" , \"history\" : [ ] , "
            + "\"id\" : \"i\" , \"receivedAt\" : 0.000001e6 , \"recipients\" : [ { \"address\" : \"a\" , \"state\" : \"pending\" } ] , "
            + "\"sender\" : \"s\" , \"size\" : -9223372036854775808 , \"smtputf8\" : false , \"nextAttemptAt\" : 1e-7 } \n\n",
        // Exponents and long mantissas, rounded as JSONDecoder rounds them.
        #"{"attempts":0,"client":"","eightBit":false,"helo":"","history":[{"at":-0.000,"durationMs":0,"recipients":["x","y"],"reply":"r","route":"\u002F"}],"id":"","receivedAt":1764451200.12345678901234567890123456789,"recipients":[],"sender":"","size":0,"smtputf8":false,"nextAttemptAt":2.4703282292062328e-324}"#,
    ]

    @Test(arguments: Self.layouts)
    func readsOtherLayoutsAsJSONDecoderDoes(json: String) throws {
        let bytes = Array(json.utf8)
        let decoded = try #require(Self.decode(bytes))
        #expect(decoded == Self.decoderOutput(bytes))
    }

    @Test func givesUpOnEveryTruncation() {
        for envelope in Self.decodeEnvelopes.prefix(4) {
            let json = EnvelopeJSON.encode(envelope)
            for length in 0..<json.count {
                #expect(Self.decode(Array(json[..<length])) == nil, "length \(length)")
            }
            #expect(Self.decode(json) == envelope)
        }
    }

    /// A compact document of every required key, with `changes` applied: a value replaces the
    /// key's JSON (or adds the key), nil leaves the key out.
    static func document(_ changes: KeyValuePairs<String, String?> = [:]) -> [UInt8] {
        var fields: [(String, String?)] = [
            ("attempts", "0"), ("client", #""c""#), ("eightBit", "false"), ("helo", #""h""#), ("history", "[]"),
            ("id", #""i""#), ("receivedAt", "1.5"), ("recipients", #"[{"address":"a","state":"pending"}]"#),
            ("sender", #""s""#), ("size", "1"), ("smtputf8", "true"),
        ]
        for (key, value) in changes {
            if let index = fields.firstIndex(where: { $0.0 == key }) { fields[index].1 = value } else { fields.append((key, value)) }
        }
        let members = fields.compactMap { key, value in value.map { "\"\(key)\":\($0)" } }
        return Array("{\(members.joined(separator: ","))}".utf8)
    }

    /// `~` in `json` stands for the byte `byte`.
    static func bytes(_ json: [UInt8], _ byte: UInt8...) -> [UInt8] {
        json.flatMap { $0 == UInt8(ascii: "~") ? byte : [$0] }
    }

    /// JSON `decode` leaves to `JSONDecoder`, named for the test report.
    struct Refused: Sendable, CustomTestStringConvertible {
        let name: String
        let json: [UInt8]
        init(_ name: String, _ json: [UInt8]) { (self.name, self.json) = (name, json) }
        var testDescription: String { self.name }
    }

    static let refused: [Refused] = [
        Refused("empty", []),
        Refused("not an object", Array("[]".utf8)),
        Refused("missing required key", Self.document(["helo": nil])),
        Refused("missing recipient state", Self.document(["recipients": #"[{"address":"a"}]"#])),
        Refused("missing attempt key", Self.document(["history": #"[{"at":1,"recipients":[],"reply":"","route":""}]"#])),
        Refused("string for number", Self.document(["size": #""1""#])),
        Refused("number for string", Self.document(["sender": "1"])),
        Refused("number for bool", Self.document(["eightBit": "0"])),
        Refused("string for double", Self.document(["receivedAt": #""1.5""#])),
        Refused("object for array", Self.document(["history": "{}"])),
        Refused("null for non-optional", Self.document(["client": "null"])),
        Refused("unknown recipient state", Self.document(["recipients": #"[{"address":"a","state":"bounced"}]"#])),
        Refused("recipient state in other case", Self.document(["recipients": #"[{"address":"a","state":"Pending"}]"#])),
        Refused("unknown key", Self.document(["extra": "1"])),
        Refused("repeated key", Array(#"{"id":"j","#.utf8) + Self.document().dropFirst()),
        Refused("repeated optional after null", Self.document(["lastError": "null,\"lastError\":\"x\""])),
        Refused("trailing garbage", Self.document() + Array(" x".utf8)),
        Refused("two objects", Self.document() + Self.document()),
        Refused("trailing comma", Self.document(["history": "[[],]"])),
        Refused("nested deeper", Self.document(["history": "[[]]"])),
        Refused("byte order mark", [0xEF, 0xBB, 0xBF] + Self.document()),
        Refused("invalid UTF-8", Self.bytes(Self.document(["sender": #""a~b""#]), 0xFF)),
        Refused("truncated UTF-8", Self.bytes(Self.document(["sender": #""a~""#]), 0xC3)),
        Refused("UTF-8 surrogate", Self.bytes(Self.document(["sender": #""~""#]), 0xED, 0xA0, 0x80)),
        Refused("invalid UTF-8 after escape", Self.bytes(Self.document(["sender": #""\n~""#]), 0x80)),
        Refused("unpaired high surrogate", Self.document(["sender": #""\ud83d""#])),
        Refused("high surrogate then text", Self.document(["sender": #""\ud83dx""#])),
        Refused("two high surrogates", Self.document(["sender": #""\ud83d\ud83d""#])),
        Refused("unpaired low surrogate", Self.document(["sender": #""\ude00""#])),
        Refused("short unicode escape", Self.document(["sender": #""\u12""#])),
        Refused("unknown escape", Self.document(["sender": #""\x41""#])),
        Refused("raw newline in string", Self.document(["sender": "\"a\nb\""])),
        Refused("raw tab in string", Self.document(["sender": "\"a\tb\""])),
        Refused("fraction for Int", Self.document(["size": "3.0"])),
        Refused("exponent for Int", Self.document(["size": "1e2"])),
        Refused("Int overflow", Self.document(["size": "9223372036854775808"])),
        Refused("Int underflow", Self.document(["attempts": "-9223372036854775809"])),
        Refused("Int far too long", Self.document(["attempts": String(repeating: "9", count: 400)])),
        Refused("leading zero", Self.document(["size": "01"])),
        Refused("plus sign", Self.document(["size": "+1"])),
        Refused("bare minus", Self.document(["size": "-"])),
        Refused("fraction without digits", Self.document(["receivedAt": "1."])),
        Refused("fraction without integer", Self.document(["receivedAt": ".5"])),
        Refused("exponent without digits", Self.document(["receivedAt": "1e+"])),
        Refused("double overflow", Self.document(["receivedAt": "1e400"])),
        Refused("double underflow", Self.document(["receivedAt": "1e-400"])),
        Refused("double underflow without exponent", Self.document(["receivedAt": "0." + String(repeating: "0", count: 400) + "1"])),
        // JSONDecoder takes some of these and refuses others: left to it.
        Refused("zero with exponent", Self.document(["receivedAt": "0e999"])),
        Refused("negative zero with exponent", Self.document(["receivedAt": "-0.0e0"])),
        Refused("infinity", Self.document(["receivedAt": "Infinity"])),
        Refused("misspelt literal", Self.document(["eightBit": "fals"])),
        Refused("literal run on", Self.document(["eightBit": "falsey"])),
        Refused("non-JSON whitespace", Self.document(["helo": "\u{0C}\"h\""])),
    ]

    @Test(arguments: Self.refused)
    func givesUpOn(_ refused: Refused) {
        #expect(Self.decode(refused.json) == nil)
    }

    @Test func theBaseDocumentReads() throws {
        let decoded = try #require(Self.decode(Self.document()))
        #expect(decoded == Self.decoderOutput(Self.document()))
    }

    /// Numbers in every form, against `JSONDecoder`: the same value, or nil where it refuses (or
    /// for a zero with an exponent, left to it). Fixed seed, bounded loop.
    @Test func readsNumbersAsJSONDecoderDoes() throws {
        var random = SplitMix(seed: 0x5EED)
        for _ in 0..<3000 {
            let bits = random.next()
            var texts = [Double(bitPattern: bits).description, String(Int(bitPattern: UInt(bits)))]
            let digits = (0..<(1 + Int(bits % 30))).map { _ in String(random.next() % 10) }.joined()
            let exponent = Int(random.next() % 700) - 350
            texts.append("\(bits & 1 == 0 ? "-" : "")\(digits.prefix(1)).\(digits.dropFirst().isEmpty ? "0" : String(digits.dropFirst()))e\(exponent)")
            for text in texts where Double(text)?.isFinite ?? false {
                let json = Self.document(["receivedAt": text, "nextAttemptAt": text])
                let decoded = Self.decode(json)
                let zeroWithExponent = Double(text) == 0 && text.contains { $0 == "e" || $0 == "E" }
                #expect(decoded == Self.decoderOutput(json) || (decoded == nil && zeroWithExponent), "\(text)")
            }
            let int = String(Int(bitPattern: UInt(bits)) >> (random.next() % 64))
            let json = Self.document(["size": int, "attempts": int])
            let decoded = try #require(Self.decode(json), "\(int)")
            #expect(decoded == Self.decoderOutput(json) && String(decoded.size) == int, "\(int)")
        }
    }

    /// Random strings (controls, quotes, backslashes, non-ASCII, astral scalars), as the writer
    /// writes them and with everything but ASCII letters written as `\u` escapes (UTF-16, so
    /// surrogate pairs), read as `JSONDecoder` reads them. Fixed seed, bounded loop.
    @Test func readsRandomStringsAsJSONDecoderDoes() throws {
        var random = SplitMix(seed: 0x57A1)
        let pool: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
        for _ in 0..<500 {
            var text = ""
            for _ in 0..<(random.next() % 12) {
                let range = pool[Int(random.next() % UInt64(pool.count))]
                let scalar = Unicode.Scalar(range.lowerBound + UInt32(random.next() % UInt64(range.count)))!
                text.unicodeScalars.append(scalar)
            }
            var envelope = Self.envelopes[0]
            envelope.sender = text
            envelope.lastError = text
            let written = EnvelopeJSON.encode(envelope)
            #expect(Self.decode(written) == envelope, "\(text.debugDescription)")
            let escaped = text.utf16.map { unit in
                let scalar = Unicode.Scalar(unit).map(Character.init)
                return scalar?.isLetter == true && unit < 0x80 ? String(scalar!) : "\\u" + String(unit, radix: 16, uppercase: unit & 1 == 0).leftPadding(to: 4)
            }.joined()
            let json = Self.document(["sender": "\"\(escaped)\"", "lastError": "\"\(escaped)\""])
            let decoded = try #require(Self.decode(json), "\(escaped)")
            #expect(decoded == Self.decoderOutput(json) && decoded.sender.unicodeScalars.elementsEqual(text.unicodeScalars), "\(escaped)")
        }
    }

    /// A written envelope with a few bytes changed, inserted or removed: never a crash, and never an
    /// envelope other than `JSONDecoder`'s. Fixed seed, bounded loop.
    @Test func readsDamagedDocumentsAsJSONDecoderDoesOrNotAtAll() {
        var random = SplitMix(seed: 0xDA4A)
        let documents = Self.decodeEnvelopes.prefix(5).map(EnvelopeJSON.encode)
        let bytes = Array(" \n\"\\/{}[],:.-+eE0159aeflnrstu\u{7f}".utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xE4, 0xED, 0xF0, 0xFF]
        var decoded = 0
        for iteration in 0..<3000 {
            var json = documents[iteration % documents.count]
            for _ in 0...(random.next() % 3) {
                let at = Int(random.next() % UInt64(json.count))
                let byte = bytes[Int(random.next() % UInt64(bytes.count))]
                switch random.next() % 3 {
                case 0: json[at] = byte
                case 1: json.insert(byte, at: at)
                default: json.remove(at: at)
                }
            }
            guard let envelope = Self.decode(json) else { continue }
            decoded += 1
            #expect(envelope == Self.decoderOutput(json), "\(String(decoding: json, as: UTF8.self))")
        }
        #expect(decoded > 100)
    }

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { self.state = seed }
        mutating func next() -> UInt64 {
            self.state &+= 0x9E37_79B9_7F4A_7C15
            var z = self.state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}

private extension String {
    func leftPadding(to width: Int) -> String { String(repeating: "0", count: max(0, width - self.count)) + self }
}
