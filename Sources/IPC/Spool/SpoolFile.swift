import Foundation
import NIOCore

/// The on-disk format of one spool file: `MAILER-SPOOL 1 <n>\n`, n bytes of envelope JSON, `\n`,
/// then the message. The JSON is pretty-printed so that a person reading `failed/` can follow it.
enum SpoolFile {
    static let magic = "MAILER-SPOOL 1 "
    private static let maxEnvelope = 16 * 1024 * 1024

    /// Writes the envelope and the message parts from the current offset, in one `writev` when the
    /// kernel takes it all; returns the number of bytes written.
    @discardableResult
    static func write(fd: Int32, path: String, envelope: Envelope, parts: [ByteBuffer]) throws -> Int {
        let json = EnvelopeJSON.encode(envelope)
        var header = Array("\(magic)\(json.count)\n".utf8)
        header.append(contentsOf: json)
        header.append(UInt8(ascii: "\n"))
        return try header.withUnsafeBytes { head in
            try withReadableBytes(of: parts[...], collected: [head]) { try writeAll(fd: fd, $0, path: path) }
        }
    }

    /// Calls `body` with the readable bytes of every buffer in `parts`, after `collected`.
    private static func withReadableBytes<Result>(
        of parts: ArraySlice<ByteBuffer>, collected: [UnsafeRawBufferPointer],
        _ body: ([UnsafeRawBufferPointer]) throws -> Result
    ) rethrows -> Result {
        guard let first = parts.first else { return try body(collected) }
        return try first.withUnsafeReadableBytes { bytes in
            try withReadableBytes(of: parts.dropFirst(), collected: collected + [bytes], body)
        }
    }

    /// Writes every buffer, in order, with as few `writev` calls as the kernel allows.
    @discardableResult
    static func writeAll(fd: Int32, _ buffers: [UnsafeRawBufferPointer], path: String) throws -> Int {
        var vectors = buffers.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress!), iov_len: $0.count)
        }
        let total = vectors.reduce(0) { $0 + $1.iov_len }
        var first = 0
        while first < vectors.count {
            let count = Int32(min(vectors.count - first, 1024))  // IOV_MAX on Linux
            var n = vectors.withUnsafeBufferPointer { writev(fd, $0.baseAddress! + first, count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw SpoolError("write", path: path)
            }
            // Skip what was written: whole vectors, then the start of a partly written one.
            while n > 0 && first < vectors.count {
                if n >= vectors[first].iov_len {
                    n -= vectors[first].iov_len
                    first += 1
                } else {
                    vectors[first].iov_base += n
                    vectors[first].iov_len -= n
                    n = 0
                }
            }
        }
        return total
    }

    /// Reads the envelope; returns it with the offset where the message starts.
    static func readEnvelope(fd: Int32, path: String) throws -> (Envelope, Int) {
        var head = [UInt8](repeating: 0, count: 64)
        let n = pread(fd, &head, head.count, 0)
        guard n > 0, let newline = head[0..<n].firstIndex(of: UInt8(ascii: "\n")) else {
            throw SpoolError("parse", path: path, errno: EINVAL)
        }
        let first = String(decoding: head[0..<newline], as: UTF8.self)
        guard first.hasPrefix(magic), let length = Int(first.dropFirst(magic.count)), length > 0,
              length < maxEnvelope
        else { throw SpoolError("parse", path: path, errno: EINVAL) }
        var json = [UInt8](repeating: 0, count: length)
        let got = pread(fd, &json, length, off_t(newline + 1))
        guard got == length else { throw SpoolError("read", path: path, errno: got < 0 ? errno : EINVAL) }
        // The JSON `EnvelopeJSON.encode` writes reads without `JSONDecoder`; anything else still does.
        if let envelope = json.withUnsafeBytes({ EnvelopeJSON.decode($0) }) {
            return (envelope, newline + 1 + length + 1)
        }
        do {
            let envelope = try JSONDecoder().decode(Envelope.self, from: Data(json))
            return (envelope, newline + 1 + length + 1)
        } catch {
            throw SpoolError("parse envelope", path: path, errno: EINVAL)
        }
    }

    static func readAll(fd: Int32, from offset: Int, path: String) throws -> [UInt8] {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SpoolError("stat", path: path) }
        let size = max(0, Int(st.st_size) - offset)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(offset + done)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw SpoolError("read", path: path) }
            done += n
        }
        return bytes
    }

    static func copy(from source: Int32, offset: Int, to destination: Int32, path: String) throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var position = offset
        while true {
            let n = buffer.withUnsafeMutableBytes { pread(source, $0.baseAddress!, $0.count, off_t(position)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw SpoolError("read", path: path) }
            if n == 0 { return }
            _ = try buffer.withUnsafeBytes { try writeAll(fd: destination, [UnsafeRawBufferPointer(rebasing: $0[0..<n])], path: path) }
            position += n
        }
    }
}
