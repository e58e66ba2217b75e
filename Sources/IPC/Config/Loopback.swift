import Foundation

/// What counts as "this host": 127.0.0.0/8, ::1 and IPv4-mapped 127.x (`::ffff:127.0.0.1`), and the
/// name `localhost`. One definition for the receiver's `allowLocalOnly`, the monitor's loopback-only
/// rule, the forwarder's "AUTH without TLS only to loopback" and the configuration's smtpHost check.
public enum Loopback {
    /// A numeric address (as `SocketAddress.ipAddress` gives it) on the loopback network.
    public static func contains(address: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, address, &v6) == 1 else { return false }
        let bytes = withUnsafeBytes(of: &v6) { Array($0) }
        if bytes[0..<15].allSatisfy({ $0 == 0 }) && bytes[15] == 1 { return true }
        let mapped = bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
        return mapped && bytes[12] == 127
    }

    /// A host as written in the configuration: `localhost` or a loopback address.
    public static func contains(host: String) -> Bool {
        host.lowercased() == "localhost" || self.contains(address: host)
    }
}
