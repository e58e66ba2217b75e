import Foundation
import NIOCore
import SMTPCore

/// Sends transactions over SMTP, reusing pooled sessions. `processingTimeout` bounds one attempt
/// (connection set-up and transaction together).
final class ForwarderSMTPTransport: ForwarderTransport, @unchecked Sendable {
    private let group: any EventLoopGroup
    private let pool: ForwarderConnectionPool
    private let tls = ForwarderTLSContexts()
    private let settings: ForwarderConnection.Settings
    private let attemptTimeout: TimeAmount

    init(group: any EventLoopGroup, pool: ForwarderConnectionPool, settings: ForwarderConnection.Settings,
         attemptTimeout: TimeAmount) {
        self.group = group
        self.pool = pool
        self.settings = settings
        self.attemptTimeout = attemptTimeout
    }

    func send(_ transaction: SMTPClientTransaction, message: [UInt8], via hop: ForwarderHop) throws
        -> SMTPClientTransactionResult
    {
        let deadline = NIODeadline.now() + self.attemptTimeout
        let stuffed = DotStuffing.encode(message)
        if let reused = self.pool.take(hop) {
            do {
                let result = try reused.send(transaction, message: stuffed, deadline: deadline)
                self.pool.give(reused)
                return result
            } catch let error as ForwarderAttemptError where error.stale {
                // The server closed an idle session, or refused RSET: try once on a new one.
                reused.close()
            } catch {
                reused.close()
                throw error
            }
        }
        let connection = try ForwarderConnection.open(hop: hop, group: self.group, tls: self.tls,
                                                      settings: self.settings, deadline: deadline)
        do {
            let result = try connection.send(transaction, message: stuffed, deadline: deadline)
            self.pool.give(connection)
            return result
        } catch {
            connection.close()
            throw error
        }
    }
}
