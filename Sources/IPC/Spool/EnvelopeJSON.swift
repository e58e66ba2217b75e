/// Writes an envelope as the JSON of a spool file: byte for byte what `JSONEncoder` writes with
/// `[.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]` (the tests compare the two), without its
/// per-call setup, boxing and generic dispatch, which cost about 4 % of mailer's CPU per message.
/// `decode` reads such JSON back without `JSONDecoder` (about 8 % of the forwarder's CPU), and gives
/// up on anything unusual, which the caller then hands to `JSONDecoder`.
enum EnvelopeJSON {
    static func encode(_ envelope: Envelope) -> [UInt8] {
        var w = Writer()
        w.open("{")
        // Keys in sorted order, as `.sortedKeys` writes them; nil optionals are left out.
        w.key("attempts"); w.int(envelope.attempts)
        if let identity = envelope.authIdentity { w.key("authIdentity"); w.string(identity) }
        w.key("client"); w.string(envelope.client)
        w.key("eightBit"); w.bool(envelope.eightBit)
        w.key("helo"); w.string(envelope.helo)
        w.key("history"); w.open("[")
        for attempt in envelope.history {
            w.element(); w.open("{")
            w.key("at"); w.double(attempt.at)
            w.key("durationMs"); w.int(attempt.durationMs)
            w.key("recipients"); w.open("[")
            for address in attempt.recipients { w.element(); w.string(address) }
            w.close("]")
            w.key("reply"); w.string(attempt.reply)
            w.key("route"); w.string(attempt.route)
            w.close("}")
        }
        w.close("]")
        w.key("id"); w.string(envelope.id)
        if let error = envelope.lastError { w.key("lastError"); w.string(error) }
        if let next = envelope.nextAttemptAt { w.key("nextAttemptAt"); w.double(next) }
        w.key("receivedAt"); w.double(envelope.receivedAt)
        w.key("recipients"); w.open("[")
        for recipient in envelope.recipients {
            w.element(); w.open("{")
            w.key("address"); w.string(recipient.address)
            if let reply = recipient.reply { w.key("reply"); w.string(reply) }
            w.key("state"); w.string(recipient.state.rawValue)
            w.close("}")
        }
        w.close("]")
        w.key("sender"); w.string(envelope.sender)
        w.key("size"); w.int(envelope.size)
        w.key("smtputf8"); w.bool(envelope.smtputf8)
        w.close("}")
        return w.bytes
    }

    /// Reads back an envelope from JSON such as `encode` writes, without `JSONDecoder`: any
    /// whitespace layout, any key order, every string escape. Gives what `JSONDecoder` gives, or nil,
    /// which means "use `JSONDecoder`" (nil is always safe). Nil for: malformed or truncated JSON,
    /// anything but whitespace after the object, invalid UTF-8, an unpaired surrogate, a missing,
    /// unknown or repeated key, `null` or a value of the wrong type where the envelope has no
    /// optional, an unknown recipient state, a number out of range, an `Int` field written with a
    /// fraction or an exponent (`3.0` or `1e2`, which `JSONDecoder` takes when integral), and a
    /// `Double` that reads as zero but is written with an exponent or with a nonzero digit.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> Envelope? {
        var reader = Reader(bytes: bytes)
        return try? reader.document()
    }

    /// Pretty-printed JSON as `JSONEncoder` lays it out: two spaces per level, `"key" : value`, and
    /// an empty container as its brackets around an empty line.
    struct Writer {
        private(set) var bytes: [UInt8] = []
        /// For each open container: nothing written into it yet.
        private var empty: [Bool] = []

        init() { self.bytes.reserveCapacity(512) }

        mutating func open(_ bracket: Unicode.Scalar) {
            self.bytes.append(UInt8(ascii: bracket))
            self.empty.append(true)
        }

        mutating func close(_ bracket: Unicode.Scalar) {
            if self.empty.removeLast() { self.newline(depth: 0) }
            self.newline(depth: self.empty.count)
            self.bytes.append(UInt8(ascii: bracket))
        }

        /// Before each value of an array.
        mutating func element() {
            if !self.empty[self.empty.count - 1] { self.bytes.append(UInt8(ascii: ",")) }
            self.empty[self.empty.count - 1] = false
            self.newline(depth: self.empty.count)
        }

        /// Before each value of an object.
        mutating func key(_ name: String) {
            self.element()
            self.string(name)
            self.raw(" : ")
        }

        mutating func int(_ value: Int) { self.raw(String(value)) }

        mutating func bool(_ value: Bool) { self.raw(value ? "true" : "false") }

        /// The shortest text that reads back as the same value, without a trailing `.0`. JSON has no
        /// infinity or NaN, and no timestamp is one: they are written as 0.
        mutating func double(_ value: Double) {
            guard value.isFinite else { return self.raw("0") }
            var text = value.description
            if text.hasSuffix(".0") { text.removeLast(2) }
            self.raw(text)
        }

        mutating func string(_ value: String) {
            self.bytes.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "\""): self.raw("\\\"")
                case UInt8(ascii: "\\"): self.raw("\\\\")
                case 0x08: self.raw("\\b")
                case 0x0C: self.raw("\\f")
                case 0x0A: self.raw("\\n")
                case 0x0D: self.raw("\\r")
                case 0x09: self.raw("\\t")
                case 0..<0x20:
                    self.raw("\\u00")
                    self.bytes.append(Self.hex[Int(byte >> 4)])
                    self.bytes.append(Self.hex[Int(byte & 0x0F)])
                default: self.bytes.append(byte)
                }
            }
            self.bytes.append(UInt8(ascii: "\""))
        }

        private static let hex = Array("0123456789abcdef".utf8)

        private mutating func raw(_ text: String) { self.bytes.append(contentsOf: text.utf8) }

        private mutating func newline(depth: Int) {
            self.bytes.append(UInt8(ascii: "\n"))
            self.bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
        }
    }

    /// A strict, one-pass reader of an envelope's JSON. Every reading method skips the whitespace
    /// before its value, and throws `Unread` at the first byte it does not expect.
    private struct Reader {
        struct Unread: Error {}

        let bytes: UnsafeRawBufferPointer
        private var index = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        /// One envelope, with nothing but whitespace after it.
        mutating func document() throws -> Envelope {
            let envelope = try self.envelope()
            self.skipSpace()
            guard self.index == self.bytes.count else { throw Unread() }
            return envelope
        }

        // Optional fields are kept as `T??` until the end: outer nil for not seen yet, so that a
        // repeated key, even after `null`, is caught.

        private mutating func envelope() throws -> Envelope {
            var id, sender, client, helo: String?
            var authIdentity, lastError: String??
            var receivedAt: Double?
            var nextAttemptAt: Double??
            var smtputf8, eightBit: Bool?
            var size, attempts: Int?
            var recipients: [Envelope.Recipient]?
            var history: [Envelope.Attempt]?
            var more = try self.open("{", "}")
            while more {
                switch try self.key() {
                case "attempts": try Self.set(&attempts, self.int())
                case "authIdentity": try Self.set(&authIdentity, self.null() ? nil : self.string())
                case "client": try Self.set(&client, self.string())
                case "eightBit": try Self.set(&eightBit, self.bool())
                case "helo": try Self.set(&helo, self.string())
                case "history": try Self.set(&history, self.array { try $0.attempt() })
                case "id": try Self.set(&id, self.string())
                case "lastError": try Self.set(&lastError, self.null() ? nil : self.string())
                case "nextAttemptAt": try Self.set(&nextAttemptAt, self.null() ? nil : self.double())
                case "receivedAt": try Self.set(&receivedAt, self.double())
                case "recipients": try Self.set(&recipients, self.array { try $0.recipient() })
                case "sender": try Self.set(&sender, self.string())
                case "size": try Self.set(&size, self.int())
                case "smtputf8": try Self.set(&smtputf8, self.bool())
                default: throw Unread()
                }
                more = try self.next("}")
            }
            guard let id, let sender, let recipients, let receivedAt, let client, let helo, let smtputf8,
                  let eightBit, let size, let attempts, let history
            else { throw Unread() }
            var envelope = Envelope(
                id: id, sender: sender, recipients: [], receivedAt: receivedAt, client: client, helo: helo,
                authIdentity: authIdentity ?? nil, smtputf8: smtputf8, eightBit: eightBit, size: size)
            envelope.recipients = recipients
            envelope.attempts = attempts
            envelope.nextAttemptAt = nextAttemptAt ?? nil
            envelope.history = history
            envelope.lastError = lastError ?? nil
            return envelope
        }

        private mutating func recipient() throws -> Envelope.Recipient {
            var address: String?
            var state: Envelope.Recipient.State?
            var reply: String??
            var more = try self.open("{", "}")
            while more {
                switch try self.key() {
                case "address": try Self.set(&address, self.string())
                case "reply": try Self.set(&reply, self.null() ? nil : self.string())
                case "state":
                    guard let value = try Envelope.Recipient.State(rawValue: self.string()) else { throw Unread() }
                    try Self.set(&state, value)
                default: throw Unread()
                }
                more = try self.next("}")
            }
            guard let address, let state else { throw Unread() }
            return Envelope.Recipient(address: address, state: state, reply: reply ?? nil)
        }

        private mutating func attempt() throws -> Envelope.Attempt {
            var at: Double?
            var route, reply: String?
            var recipients: [String]?
            var durationMs: Int?
            var more = try self.open("{", "}")
            while more {
                switch try self.key() {
                case "at": try Self.set(&at, self.double())
                case "durationMs": try Self.set(&durationMs, self.int())
                case "recipients": try Self.set(&recipients, self.array { try $0.string() })
                case "reply": try Self.set(&reply, self.string())
                case "route": try Self.set(&route, self.string())
                default: throw Unread()
                }
                more = try self.next("}")
            }
            guard let at, let route, let recipients, let reply, let durationMs else { throw Unread() }
            return Envelope.Attempt(at: at, route: route, recipients: recipients, reply: reply, durationMs: durationMs)
        }

        /// Stores the value of a key, which must not have been seen before.
        private static func set<Value>(_ slot: inout Value?, _ value: Value) throws {
            guard slot == nil else { throw Unread() }
            slot = value
        }

        // MARK: Containers

        /// Reads `open`; true if a member follows, false if `close` does (and reads it).
        private mutating func open(_ open: Unicode.Scalar, _ close: Unicode.Scalar) throws -> Bool {
            try self.expect(open)
            guard try self.peek() == UInt8(ascii: close) else { return true }
            self.index += 1
            return false
        }

        /// After a member: true if `,` and another member follow, false at `close` (read).
        private mutating func next(_ close: Unicode.Scalar) throws -> Bool {
            switch try self.take() {
            case UInt8(ascii: ","): return true
            case UInt8(ascii: close): return false
            default: throw Unread()
            }
        }

        private mutating func array<Element>(_ element: (inout Reader) throws -> Element) throws -> [Element] {
            var elements: [Element] = []
            var more = try self.open("[", "]")
            while more {
                elements.append(try element(&self))
                more = try self.next("]")
            }
            return elements
        }

        /// A key and its colon.
        private mutating func key() throws -> String {
            let key = try self.string()
            try self.expect(":")
            return key
        }

        // MARK: Literals and numbers

        private mutating func bool() throws -> Bool {
            if self.word("true") { return true }
            if self.word("false") { return false }
            throw Unread()
        }

        /// Reads `null` if it comes next.
        private mutating func null() -> Bool { self.word("null") }

        /// Reads `text` if it comes next.
        private mutating func word(_ text: StaticString) -> Bool {
            self.skipSpace()
            let word = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
            guard self.bytes.count - self.index >= word.count,
                  self.bytes[self.index..<self.index + word.count].elementsEqual(word)
            else { return false }
            self.index += word.count
            return true
        }

        /// A number without fraction or exponent, in `Int`'s range.
        private mutating func int() throws -> Int {
            let number = try self.number()
            guard number.integral else { throw Unread() }
            let negative = self.bytes[number.text.lowerBound] == UInt8(ascii: "-")
            // Summed as a negative number, so that `Int.min` fits.
            var value = 0
            for byte in self.bytes[number.text.dropFirst(negative ? 1 : 0)] {
                let (tens, overflow) = value.multipliedReportingOverflow(by: 10)
                let (sum, underflow) = tens.subtractingReportingOverflow(Int(byte &- UInt8(ascii: "0")))
                guard !overflow, !underflow else { throw Unread() }
                value = sum
            }
            if negative { return value }
            guard value != .min else { throw Unread() }
            return -value
        }

        /// A number as `JSONDecoder` reads it: rounded correctly, as `Double(String)` does, and
        /// refused when out of range. A zero is only taken as plain zero digits: `JSONDecoder`
        /// refuses nonzero digits that round to zero, and (Swift 6.3) some zeros with an exponent,
        /// such as `0e1` but not `0e999`, so those are left to it.
        private mutating func double() throws -> Double {
            let number = try self.number()
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: self.bytes[number.text]), as: UTF8.self)
            guard let value = Double(text), value.isFinite, value != 0 || number.plainZero else { throw Unread() }
            return value
        }

        /// The extent of a JSON number, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; `integral`
        /// when it has neither fraction nor exponent, `plainZero` when it has no exponent and every
        /// digit is 0.
        private mutating func number() throws -> (text: Range<Int>, integral: Bool, plainZero: Bool) {
            self.skipSpace()
            let start = self.index
            _ = self.skip("-")
            let integer = self.digits()
            // At least one digit, and no leading zero.
            guard integer.count == 1 || (integer.count > 1 && self.bytes[self.index - integer.count] != UInt8(ascii: "0"))
            else { throw Unread() }
            var integral = true
            var zero = integer.zero
            if self.skip(".") {
                let fraction = self.digits()
                guard fraction.count > 0 else { throw Unread() }
                integral = false
                zero = zero && fraction.zero
            }
            if self.skip("e") || self.skip("E") {
                _ = self.skip("+") || self.skip("-")
                guard self.digits().count > 0 else { throw Unread() }
                integral = false
                zero = false
            }
            return (start..<self.index, integral, zero)
        }

        /// Reads decimal digits: how many, and whether all of them are 0.
        private mutating func digits() -> (count: Int, zero: Bool) {
            let start = self.index
            var zero = true
            while self.index < self.bytes.count, case UInt8(ascii: "0")...UInt8(ascii: "9") = self.bytes[self.index] {
                zero = zero && self.bytes[self.index] == UInt8(ascii: "0")
                self.index += 1
            }
            return (self.index - start, zero)
        }

        // MARK: Strings

        /// A string: the bytes between the quotes when it has no escapes, else built from them.
        private mutating func string() throws -> String {
            try self.expect("\"")
            let start = self.index
            var ascii = true
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: "\""):
                    let text = try Self.text(UnsafeRawBufferPointer(rebasing: self.bytes[start..<self.index]), ascii: ascii)
                    self.index += 1
                    return text
                case UInt8(ascii: "\\"): return try self.escapedString(from: start)
                case 0..<0x20: throw Unread()
                case 0x80...:
                    ascii = false
                    self.index += 1
                default: self.index += 1
                }
            }
            throw Unread()
        }

        /// The rest of a string that starts at `start` (after its quote) and has an escape at `index`.
        private mutating func escapedString(from start: Int) throws -> String {
            var utf8 = Array(self.bytes[start..<self.index])
            while self.index < self.bytes.count {
                let byte = self.bytes[self.index]
                self.index += 1
                switch byte {
                case UInt8(ascii: "\""): return try utf8.withUnsafeBytes { try Self.text($0, ascii: false) }
                case UInt8(ascii: "\\"): try self.escape(into: &utf8)
                case 0..<0x20: throw Unread()
                default: utf8.append(byte)
                }
            }
            throw Unread()
        }

        /// The UTF-8 of the escape after a backslash.
        private mutating func escape(into utf8: inout [UInt8]) throws {
            guard self.index < self.bytes.count else { throw Unread() }
            let byte = self.bytes[self.index]
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(byte)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var code = try self.hex4()
                if (0xD800..<0xDC00).contains(code) {
                    // A high surrogate: the low one must follow as another `\u` escape.
                    guard self.skip("\\"), self.skip("u") else { throw Unread() }
                    let low = try self.hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw Unread() }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                // Nil for a lone low surrogate.
                guard let scalar = Unicode.Scalar(code) else { throw Unread() }
                UTF8.encode(scalar) { utf8.append($0) }
            default: throw Unread()
            }
        }

        /// The four hex digits of a `\u` escape.
        private mutating func hex4() throws -> UInt32 {
            guard self.bytes.count - self.index >= 4 else { throw Unread() }
            var code: UInt32 = 0
            for _ in 0..<4 {
                let byte = self.bytes[self.index]
                self.index += 1
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw Unread()
                }
                code = code << 4 | UInt32(digit)
            }
            return code
        }

        /// The text of `utf8` if it is valid UTF-8; `ascii` when no byte is above 0x7F, so that there
        /// is nothing to check.
        private static func text(_ utf8: UnsafeRawBufferPointer, ascii: Bool) throws -> String {
            if ascii { return String(decoding: utf8, as: UTF8.self) }
            guard let text = String(validating: utf8, as: UTF8.self) else { throw Unread() }
            return text
        }

        // MARK: Bytes

        private mutating func skipSpace() {
            while self.index < self.bytes.count {
                switch self.bytes[self.index] {
                case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): self.index += 1
                default: return
                }
            }
        }

        /// The next byte after whitespace, not read.
        private mutating func peek() throws -> UInt8 {
            self.skipSpace()
            guard self.index < self.bytes.count else { throw Unread() }
            return self.bytes[self.index]
        }

        /// The next byte after whitespace, read.
        private mutating func take() throws -> UInt8 {
            let byte = try self.peek()
            self.index += 1
            return byte
        }

        private mutating func expect(_ byte: Unicode.Scalar) throws {
            guard try self.take() == UInt8(ascii: byte) else { throw Unread() }
        }

        /// Reads `byte` if it comes next, whitespace not skipped.
        private mutating func skip(_ byte: Unicode.Scalar) -> Bool {
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: byte) else { return false }
            self.index += 1
            return true
        }
    }
}
