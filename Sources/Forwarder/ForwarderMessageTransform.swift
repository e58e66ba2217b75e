import IPC

/// A stage the message passes through before it is sent, once per delivery attempt (DKIM signing
/// slots in here). Transforms run in order; one that throws defers the message.
protocol ForwarderMessageTransform: Sendable {
    func apply(to message: [UInt8], envelope: Envelope) throws -> [UInt8]
}

extension Array where Element == any ForwarderMessageTransform {
    func apply(to message: [UInt8], envelope: Envelope) throws -> [UInt8] {
        try self.reduce(message) { try $1.apply(to: $0, envelope: envelope) }
    }
}
