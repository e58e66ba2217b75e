/// Why a client session cannot go on. Each kind tells the forwarder how to count the failure
/// (`outcome`); all of them end the connection, and all make it try the next host.
public struct SMTPClientError: Error, Equatable, Sendable, CustomStringConvertible {
    private enum Base: Equatable, Sendable {
        case rejected(stage: String, reply: SMTPReply)
        case startTLSRefused(SMTPReply)
        case authenticationFailed(SMTPReply)
        case authenticationUnavailable(String)
        case authenticationNeedsTLS
        case malformedReply(String)
        case unexpectedReply(SMTPReply)
    }

    private let base: Base

    /// The server refused the session at `stage` (greeting, EHLO, HELO, RSET).
    public static func rejected(stage: String, reply: SMTPReply) -> Self { Self(base: .rejected(stage: stage, reply: reply)) }
    /// STARTTLS was offered but answered with something other than 220.
    public static func startTLSRefused(_ reply: SMTPReply) -> Self { Self(base: .startTLSRefused(reply)) }
    /// The server did not accept the credentials.
    public static func authenticationFailed(_ reply: SMTPReply) -> Self { Self(base: .authenticationFailed(reply)) }
    /// Credentials are configured but the server offers neither PLAIN nor LOGIN.
    public static func authenticationUnavailable(_ offered: String) -> Self {
        Self(base: .authenticationUnavailable(offered))
    }
    /// Credentials would travel in plaintext to a host that is not loopback: they are not sent.
    public static let authenticationNeedsTLS = Self(base: .authenticationNeedsTLS)
    /// The server sent something that is not an SMTP reply.
    public static func malformedReply(_ text: String) -> Self { Self(base: .malformedReply(text)) }
    /// A reply arrived when none was expected (a 421 on an idle connection).
    public static func unexpectedReply(_ reply: SMTPReply) -> Self { Self(base: .unexpectedReply(reply)) }

    /// How the forwarder counts it.
    public enum Outcome: String, Sendable {
        case temporary, permanent, tls, authentication
    }

    public var outcome: Outcome {
        switch self.base {
        case .rejected(_, let reply), .unexpectedReply(let reply):
            return reply.isPermanent ? .permanent : .temporary
        case .startTLSRefused: return .tls
        case .authenticationFailed, .authenticationUnavailable, .authenticationNeedsTLS: return .authentication
        case .malformedReply: return .temporary
        }
    }

    /// The server's reply, when there was one.
    public var reply: SMTPReply? {
        switch self.base {
        case .rejected(_, let reply), .startTLSRefused(let reply), .authenticationFailed(let reply),
             .unexpectedReply(let reply):
            return reply
        default: return nil
        }
    }

    public var description: String {
        switch self.base {
        case .rejected(let stage, let reply): return "\(stage) refused: \(reply)"
        case .startTLSRefused(let reply): return "STARTTLS refused: \(reply)"
        case .authenticationFailed(let reply): return "authentication failed: \(reply)"
        case .authenticationUnavailable(let offered):
            return "credentials configured but the server offers no PLAIN or LOGIN (AUTH \(offered.isEmpty ? "not offered" : offered))"
        case .authenticationNeedsTLS:
            return "refusing to send credentials without TLS to a host that is not loopback (the server offers no STARTTLS)"
        case .malformedReply(let text): return "malformed reply: \(text)"
        case .unexpectedReply(let reply): return "unexpected reply: \(reply)"
        }
    }
}
