import Crypto
import Foundation
import IPC
import SMTPCore

/// The receiver's answers to the session state machine: credentials from the configuration,
/// rate limits, CRAM-MD5 challenges.
struct ReceiverPolicy: SMTPSessionPolicy {
    let credentials: [String: String]
    let hostname: String
    let rateLimiter: RateLimiter
    let reporter: StatusReporter

    func verify(_ attempt: SMTPAuthAttempt) -> Bool {
        guard let expected = self.credentials[attempt.user] else { return false }
        switch attempt {
        case .plain(_, _, let password), .login(_, let password):
            return Self.constantTimeEqual(Array(password.utf8), Array(expected.utf8))
        case .cramMD5(_, let challenge, let digestHex):
            let mac = HMAC<Insecure.MD5>.authenticationCode(
                for: Data(challenge.utf8), using: SymmetricKey(data: Data(expected.utf8)))
            let hex = mac.map { String(format: "%02x", $0) }.joined()
            return Self.constantTimeEqual(Array(hex.utf8), Array(digestHex.utf8))
        }
    }

    func admit(sender: String, identity: String?) -> SMTPReply? {
        let verdict = self.rateLimiter.admit(sender: sender)
        let scope: String
        switch verdict {
        case .allowed: return nil
        case .senderHourly: scope = "sender_hour"
        case .senderDaily: scope = "sender_day"
        case .globalHourly: scope = "global_hour"
        case .globalDaily: scope = "global_day"
        }
        self.reporter.count("mailer_rate_limited_total", "scope=\(scope)")
        self.reporter.count("mailer_rejected_total", "reason=rate_limit")
        return SMTPReply(451, "4.7.1", "Rate limit exceeded (\(scope.replacingOccurrences(of: "_", with: " "))), try again later")
    }

    func makeChallenge() -> String {
        "<\(UInt64.random(in: 1...UInt64.max)).\(Int(Date().timeIntervalSince1970))@\(self.hostname)>"
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
