import Foundation

/// A spool operation that failed, with the errno and the path, so the receiver can tell a full disk
/// (452) from another I/O error (451) and the log names the file.
public struct SpoolError: Error, CustomStringConvertible, Sendable {
    public let operation: String
    public let path: String
    public let errno: Int32

    public init(_ operation: String, path: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    /// The disk (or the user's quota) is full.
    public var isNoSpace: Bool { self.errno == ENOSPC || self.errno == EDQUOT }

    public var description: String {
        "\(self.operation) \(self.path): \(String(cString: strerror(self.errno)))"
    }
}
