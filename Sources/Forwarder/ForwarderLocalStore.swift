import Foundation
import IPC

/// Local mode: a message is kept as `local/<ID>.eml` under the data directory instead of being
/// sent (the original's behaviour when forwarding is off). Written as `.<ID>.eml.tmp`, fsync'd,
/// renamed, then the directory fsync'd, so a crash leaves either no file or the whole one.
struct ForwarderLocalStore: Sendable {
    let directory: String

    func path(for id: String) -> String { (self.directory as NSString).appendingPathComponent("\(id).eml") }

    func store(id: String, message: [UInt8]) throws {
        let final = self.path(for: id)
        let tmp = (self.directory as NSString).appendingPathComponent(".\(id).eml.tmp")
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        if fd < 0 { throw SpoolError("create", path: tmp) }
        do {
            var offset = 0
            while offset < message.count {
                let n = message.withUnsafeBytes { write(fd, $0.baseAddress! + offset, message.count - offset) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw SpoolError("write", path: tmp) }
                offset += n
            }
            if fsync(fd) != 0 { throw SpoolError("fsync", path: tmp) }
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        if rename(tmp, final) != 0 {
            let error = SpoolError("rename", path: final)
            unlink(tmp)
            throw error
        }
        let dir = open(self.directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir < 0 { throw SpoolError("open directory", path: self.directory) }
        defer { close(dir) }
        if fsync(dir) != 0 { throw SpoolError("fsync directory", path: self.directory) }
    }
}
