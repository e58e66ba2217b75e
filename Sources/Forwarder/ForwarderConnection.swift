import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import SMTPCore

/// A set-up SMTP session with one hop, owned by one delivery thread at a time (or idle in the pool).
/// Opening it resolves the host name and tries every address in turn (IPv4 and IPv6) until one
/// connects; the greeting, EHLO, STARTTLS and AUTH are done before `open` returns.
final class ForwarderConnection: @unchecked Sendable {
    struct Settings: Sendable {
        var heloName: String
        var connectTimeout: TimeAmount
        var timeouts: ForwarderSessionHandler.Timeouts
    }

    let hop: ForwarderHop
    let channel: any Channel
    private let handler: ForwarderSessionHandler
    /// When it was last given back to the pool.
    var idleSince = Date()
    var transactions = 0
    /// Whether the session was ready for another transaction when the last one ended (read on the
    /// event loop together with the result, so that the pool needs no hop of its own).
    private var readyAfterLastUse = true

    private init(hop: ForwarderHop, channel: any Channel, handler: ForwarderSessionHandler) {
        self.hop = hop
        self.channel = channel
        self.handler = handler
    }

    /// Connects and sets the session up; blocks the calling thread (never an event loop).
    static func open(hop: ForwarderHop, group: any EventLoopGroup, tls: ForwarderTLSContexts, settings: Settings,
                     deadline: NIODeadline) throws -> ForwarderConnection {
        let tlsContext: NIOSSLContext
        do {
            tlsContext = try tls.context(for: hop.verification)
        } catch {
            throw ForwarderAttemptError(.tlsError, "cannot set TLS up: \(error)")
        }
        let addresses = try self.resolve(hop.host, port: hop.port)
        let serverHostname = (try? SocketAddress(ipAddress: hop.host, port: 0)) == nil ? hop.host : nil
        let configuration = SMTPClientStateMachine.Configuration(
            heloName: settings.heloName, credentials: hop.credentials, tlsActive: hop.implicitTLS,
            plaintextAuthAllowed: hop.isLoopback)
        var errors: [String] = []
        var lastSetUpFailure: ForwarderAttemptError?
        for address in addresses {
            if NIODeadline.now() >= deadline {
                throw ForwarderAttemptError(.timeout, "no time left to connect to \(address)")
            }
            let made = NIOLockedValueBox<ForwarderSessionHandler?>(nil)
            let remaining = deadline - NIODeadline.now()
            let bootstrap = ClientBootstrap(group: group)
                .connectTimeout(min(settings.connectTimeout, remaining))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = ForwarderSessionHandler(
                            eventLoop: channel.eventLoop, configuration: configuration, tlsContext: tlsContext,
                            serverHostname: serverHostname, timeouts: settings.timeouts, deadline: deadline)
                        if hop.implicitTLS {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: tlsContext, serverHostname: serverHostname))
                        }
                        try channel.pipeline.syncOperations.addHandler(handler)
                        made.withLockedValue { $0 = handler }
                    }
                }
            let channel: any Channel
            do {
                channel = try bootstrap.connect(to: address).wait()
            } catch {
                errors.append("\(Self.describe(address)): \(Self.describe(error))")
                continue
            }
            guard let handler = made.withLockedValue({ $0 }) else {
                channel.close(promise: nil)
                throw ForwarderAttemptError(.connectError, "connection set-up failed")
            }
            do {
                try handler.ready.wait()
            } catch {
                channel.close(promise: nil)
                let failure = error as? ForwarderAttemptError ?? ForwarderAttemptError(.connectError, "\(error)")
                // Another address of the host may be another server that works; a refused login
                // would be refused there too (and repeating it may lock the account).
                guard [.connectError, .timeout, .tlsError].contains(failure.outcome) else { throw failure }
                errors.append("\(Self.describe(address)): \(failure.description)")
                lastSetUpFailure = failure
                continue
            }
            return ForwarderConnection(hop: hop, channel: channel, handler: handler)
        }
        if let failure = lastSetUpFailure, errors.count == 1 { throw failure }
        throw ForwarderAttemptError(lastSetUpFailure?.outcome ?? .connectError,
                                    "cannot connect to \(hop.host):\(hop.port): \(errors.joined(separator: "; "))")
    }

    /// Runs one transaction; blocks the calling thread.
    func send(_ transaction: SMTPClientTransaction, message: [UInt8], deadline: NIODeadline) throws
        -> SMTPClientTransactionResult
    {
        let handler = self.handler
        let ended = self.channel.eventLoop.flatSubmit {
            handler.begin(transaction, message: message, deadline: deadline).map { ($0, handler.isUsable) }
        }
        self.readyAfterLastUse = false
        let (result, ready) = try ended.wait()
        self.readyAfterLastUse = ready
        self.transactions += 1
        return result
    }

    /// True when it may carry another transaction: connected, and ready when the last transaction
    /// ended. Costs no hop to the event loop; a session that broke while idle fails `begin` as
    /// stale, and the transport then opens a new one.
    var isUsable: Bool { self.readyAfterLastUse && self.channel.isActive }

    /// Says QUIT and closes (does not wait).
    func close() {
        let handler = self.handler
        self.channel.eventLoop.execute { handler.quit() }
    }

    // MARK: - Names

    /// Every address of `host`, in the resolver's order (IPv6 and IPv4 as the system prefers).
    static func resolve(_ host: String, port: Int) throws -> [SocketAddress] {
        if let literal = try? SocketAddress(ipAddress: host, port: port) { return [literal] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var info: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &info)
        guard status == 0, let first = info else {
            throw ForwarderAttemptError(.connectError, "cannot resolve \(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let raw = entry.pointee.ai_addr {
                switch entry.pointee.ai_family {
                case AF_INET:
                    let address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
                    if !addresses.contains(address) { addresses.append(address) }
                case AF_INET6:
                    let address = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { SocketAddress($0.pointee, host: host) }
                    if !addresses.contains(address) { addresses.append(address) }
                default:
                    break
                }
            }
            cursor = entry.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw ForwarderAttemptError(.connectError, "\(host) has no address") }
        return addresses
    }

    private static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }

    private static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if error is ChannelError, case ChannelError.connectTimeout = error { return "connect timeout" }
        return "\(error)"
    }
}
