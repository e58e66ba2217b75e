import Foundation
import NIOSSL

/// One `NIOSSLContext` per way of verifying (system store, a CA file, none), made on first use.
final class ForwarderTLSContexts: @unchecked Sendable {
    private let lock = NSLock()
    private var contexts: [ForwarderHop.Verification: NIOSSLContext] = [:]

    func context(for verification: ForwarderHop.Verification) throws -> NIOSSLContext {
        self.lock.lock()
        defer { self.lock.unlock() }
        if let existing = self.contexts[verification] { return existing }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        switch verification {
        case .system:
            configuration.trustRoots = .default
        case .caFile(let path):
            configuration.trustRoots = .file(path)
        case .none:
            // XXX: insecureSkipVerify — the provider's certificate is not checked at all.
            configuration.certificateVerification = .none
        }
        let made = try NIOSSLContext(configuration: configuration)
        self.contexts[verification] = made
        return made
    }
}
