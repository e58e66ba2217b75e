import SMTPCore

/// Sends one transaction to one hop. The SMTP transport does it over the network; tests use fakes.
protocol ForwarderTransport: Sendable {
    /// The per-recipient result, or a `ForwarderAttemptError` when the hop could not be used at all.
    func send(_ transaction: SMTPClientTransaction, message: [UInt8], via hop: ForwarderHop) throws
        -> SMTPClientTransactionResult
}

/// Why a hop could not take a transaction: counted under `outcome` in
/// `mailer_delivery_attempts_total`, and a reason to try the next hop.
struct ForwarderAttemptError: Error, Equatable, CustomStringConvertible, Sendable {
    enum Outcome: String, Sendable {
        case connectError = "connect_error"
        case tlsError = "tls_error"
        case authError = "auth_error"
        case timeout
        case temporary
        case permanent
    }

    var outcome: Outcome
    var description: String
    /// The connection was reused and broke before the transaction started: a fresh one may work.
    var stale = false

    init(_ outcome: Outcome, _ description: String, stale: Bool = false) {
        self.outcome = outcome
        self.description = description
        self.stale = stale
    }

    init(_ error: SMTPClientError) {
        switch error.outcome {
        case .temporary: self.init(.temporary, error.description)
        case .permanent: self.init(.permanent, error.description)
        case .tls: self.init(.tlsError, error.description)
        case .authentication: self.init(.authError, error.description)
        }
    }
}
