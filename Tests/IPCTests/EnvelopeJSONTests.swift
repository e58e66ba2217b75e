import Foundation
import Testing

@testable import IPC

/// The spool's envelope writer must write exactly what `JSONEncoder` writes (files written before
/// it, and by it, read the same), and read back with `JSONDecoder` to the same envelope.
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
}
