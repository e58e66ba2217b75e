/// Writes an envelope as the JSON of a spool file: byte for byte what `JSONEncoder` writes with
/// `[.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]` (the tests compare the two), without its
/// per-call setup, boxing and generic dispatch, which cost about 4 % of the receiver's CPU per
/// message. Reading stays with `JSONDecoder`.
enum EnvelopeJSON {
    static func encode(_ envelope: Envelope) -> [UInt8] {
        var writer = Writer()
        writer.object(indent: 0) { object in
            object.field("attempts") { $0.int(envelope.attempts) }
            if let identity = envelope.authIdentity { object.field("authIdentity") { $0.string(identity) } }
            object.field("client") { $0.string(envelope.client) }
            object.field("eightBit") { $0.bool(envelope.eightBit) }
            object.field("helo") { $0.string(envelope.helo) }
            object.field("history") { writer in
                writer.array(envelope.history, indent: 1) { writer, attempt in
                    writer.object(indent: 2) { object in
                        object.field("at") { $0.double(attempt.at) }
                        object.field("durationMs") { $0.int(attempt.durationMs) }
                        object.field("recipients") { writer in
                            writer.array(attempt.recipients, indent: 3) { $0.string($1) }
                        }
                        object.field("reply") { $0.string(attempt.reply) }
                        object.field("route") { $0.string(attempt.route) }
                    }
                }
            }
            object.field("id") { $0.string(envelope.id) }
            if let error = envelope.lastError { object.field("lastError") { $0.string(error) } }
            if let next = envelope.nextAttemptAt { object.field("nextAttemptAt") { $0.double(next) } }
            object.field("receivedAt") { $0.double(envelope.receivedAt) }
            object.field("recipients") { writer in
                writer.array(envelope.recipients, indent: 1) { writer, recipient in
                    writer.object(indent: 2) { object in
                        object.field("address") { $0.string(recipient.address) }
                        if let reply = recipient.reply { object.field("reply") { $0.string(reply) } }
                        object.field("state") { $0.string(recipient.state.rawValue) }
                    }
                }
            }
            object.field("sender") { $0.string(envelope.sender) }
            object.field("size") { $0.int(envelope.size) }
            object.field("smtputf8") { $0.bool(envelope.smtputf8) }
        }
        return writer.bytes
    }

    struct Writer {
        var bytes: [UInt8] = []

        init() { self.bytes.reserveCapacity(512) }

        mutating func raw(_ text: String) { self.bytes.append(contentsOf: text.utf8) }

        mutating func newline(indent: Int) {
            self.bytes.append(UInt8(ascii: "\n"))
            self.bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * indent))
        }

        /// `{`, the fields (in the order given: callers list them sorted), `}`. The object itself
        /// is at nesting level `indent`.
        mutating func object(indent: Int, _ fields: (inout ObjectWriter) -> Void) {
            self.bytes.append(UInt8(ascii: "{"))
            var object = ObjectWriter(writer: self, indent: indent + 1)
            self.bytes = []
            fields(&object)
            self = object.writer
            if object.count == 0 { self.newline(indent: 0) }
            self.newline(indent: indent)
            self.bytes.append(UInt8(ascii: "}"))
        }

        /// `[`, the elements, `]`; an empty array is `[`, an empty line, `]`, as JSONEncoder writes it.
        mutating func array<Element>(_ elements: [Element], indent: Int, _ element: (inout Writer, Element) -> Void) {
            self.bytes.append(UInt8(ascii: "["))
            if elements.isEmpty { self.newline(indent: 0) }
            for (index, value) in elements.enumerated() {
                if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
                self.newline(indent: indent + 1)
                element(&self, value)
            }
            self.newline(indent: indent)
            self.bytes.append(UInt8(ascii: "]"))
        }

        mutating func int(_ value: Int) { self.raw(String(value)) }

        mutating func bool(_ value: Bool) { self.raw(value ? "true" : "false") }

        /// The shortest text that reads back as the same value, without a trailing `.0`; JSON has no
        /// infinity or NaN, and no timestamp is one, so they are written as 0.
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
                    let hex = Array("0123456789abcdef".utf8)
                    self.raw("\\u00")
                    self.bytes.append(hex[Int(byte >> 4)])
                    self.bytes.append(hex[Int(byte & 0x0F)])
                default: self.bytes.append(byte)
                }
            }
            self.bytes.append(UInt8(ascii: "\""))
        }
    }

    struct ObjectWriter {
        var writer: Writer
        let indent: Int
        var count = 0

        mutating func field(_ key: String, _ value: (inout Writer) -> Void) {
            if self.count > 0 { self.writer.bytes.append(UInt8(ascii: ",")) }
            self.count += 1
            self.writer.newline(indent: self.indent)
            self.writer.string(key)
            self.writer.raw(" : ")
            value(&self.writer)
        }
    }
}
