import Foundation

/// Shares one `fsync` of a directory among every caller that asked for it while the previous one
/// ran: a commit takes a ticket after its rename, and any fsync that starts after the ticket was
/// taken covers it. With many sessions finishing DATA at once, one flush serves them all.
final class GroupSync: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let flush: @Sendable (Int32) -> Int32
    private let condition = NSCondition()
    private var requested: UInt64 = 0
    private var completed: UInt64 = 0
    private var running = false
    private var failure: (upTo: UInt64, errno: Int32)?

    init(directory: String, flush: @escaping @Sendable (Int32) -> Int32 = { fsync($0) }) throws {
        self.path = directory
        self.flush = flush
        self.fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if self.fd < 0 { throw SpoolError("open directory", path: directory) }
    }

    deinit { close(self.fd) }

    /// Returns once the directory entries created before this call are on disk.
    func sync() throws {
        self.condition.lock()
        defer { self.condition.unlock() }
        self.requested += 1
        let ticket = self.requested
        while self.completed < ticket {
            if self.running {
                self.condition.wait()
                continue
            }
            self.running = true
            let target = self.requested
            self.condition.unlock()
            let result = self.flush(self.fd)
            let error = errno
            self.condition.lock()
            self.running = false
            self.completed = target
            if result != 0 { self.failure = (target, error) }
            self.condition.broadcast()
        }
        if let failure = self.failure, failure.upTo >= ticket {
            throw SpoolError("fsync directory", path: self.path, errno: failure.errno)
        }
    }
}
