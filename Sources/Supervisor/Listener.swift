import Foundation
import IPC

/// A listening TCP socket the supervisor binds (as root, for port 25) and hands to workers.
struct Listener {
    let fd: Int32
    let host: String
    let port: Int

    struct BindError: Error, CustomStringConvertible {
        let description: String
    }

    /// Binds and listens on `host:port` (port 0 picks a free port; `port` then holds it).
    static func bind(host: String, port: Int, key: String) throws -> Listener {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw BindError(description: "cannot resolve \(key) '\(host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BindError(description: "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard Glibc.bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            var hint = ""
            if port < 1024 && !Privileges.isRoot { hint = " (ports below 1024 need root; choose e.g. 2525)" }
            throw BindError(description: "cannot bind \(key) \(host):\(port): \(message)\(hint)")
        }
        guard listen(fd, 1024) == 0 else {
            close(fd)
            throw BindError(description: "listen on \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var bound = port
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        if storage.ss_family == sa_family_t(AF_INET) {
            bound = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) } }
        } else if storage.ss_family == sa_family_t(AF_INET6) {
            bound = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) } }
        }
        return Listener(fd: fd, host: host, port: bound)
    }
}
