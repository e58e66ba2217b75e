/// Writes an envelope as the JSON of a spool file: byte for byte what `JSONEncoder` writes with
/// `[.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]` (the tests compare the two), without its
/// per-call setup, boxing and generic dispatch, which cost about 4 % of mailer's CPU per message.
/// Reading stays with `JSONDecoder`.
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
}
