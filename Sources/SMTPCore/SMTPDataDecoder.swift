import NIOCore

/// Reads the DATA section of a transaction: finds the end (`CRLF.CRLF`, and nothing else), undoes
/// dot-stuffing exactly (RFC 5321 §4.5.2), and notes what makes the message unacceptable.
///
/// A bare CR or bare LF never ends a line here, so `\n.\n`, `\n.\r\n`, `\r\n.\n` and `\r.\r` cannot end
/// DATA and start a second, smuggled message; a message that carries any of them is refused whole.
/// Bytes past the size limit are counted but not kept.
public struct SMTPDataDecoder: Sendable {
    public enum Outcome: Equatable, Sendable {
        case accepted
        case tooLarge
        case bareLineEnding
        case lineTooLong
    }

    public private(set) var body: ByteBuffer
    public private(set) var receivedBytes = 0
    private let maxSize: Int
    private let maxLineLength: Int
    private var atLineStart = true
    private var pendingCR = false
    /// The current line began with a dot that was removed.
    private var lineHadDot = false
    private var lineLength = 0
    private var sawBareLineEnding = false
    private var sawLongLine = false
    private var overSize = false
    /// 8-bit bytes seen (for BODY=8BITMIME bookkeeping).
    public private(set) var sawEightBit = false

    public init(maxSize: Int, maxLineLength: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxSize = maxSize
        self.maxLineLength = maxLineLength
        self.body = allocator.buffer(capacity: 16 * 1024)
    }

    /// Consumes bytes from `input` up to and including the end-of-data line. Returns the outcome once
    /// the end was seen (the rest of `input` is left for the command reader), nil if more is needed.
    public mutating func feed(_ input: inout ByteBuffer) -> Outcome? {
        var consumed = 0
        var finished = false
        input.withUnsafeReadableBytes { bytes in
            var chunkStart = 0
            func flush(_ end: Int) {
                if end > chunkStart {
                    self.append(UnsafeRawBufferPointer(rebasing: bytes[chunkStart..<end]))
                }
            }
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                if self.pendingCR {
                    self.pendingCR = false
                    if b == 0x0A {
                        // CRLF: a real line end.
                        if self.lineHadDot && self.lineLength == 1 {
                            finished = true
                            i += 1
                            break
                        }
                        self.appendByte(0x0D)
                        self.appendByte(0x0A)
                        self.atLineStart = true
                        self.lineHadDot = false
                        self.lineLength = 0
                        i += 1
                        chunkStart = i
                        continue
                    }
                    // A bare CR: kept, noted, and the line goes on (so no dot line can follow it:
                    // `<CRLF><CR>.<CRLF>` is not an end of data).
                    self.sawBareLineEnding = true
                    self.appendByte(0x0D)
                    self.atLineStart = false
                    self.lineLength += 1
                    chunkStart = i
                }
                switch b {
                case 0x0D:
                    flush(i)
                    self.pendingCR = true
                    i += 1
                    chunkStart = i
                case 0x0A:
                    // A bare LF: not a line end (so no dot line can follow it).
                    self.sawBareLineEnding = true
                    self.atLineStart = false
                    self.lineLength += 1
                    i += 1
                default:
                    if self.atLineStart {
                        self.atLineStart = false
                        if b == UInt8(ascii: ".") {
                            flush(i)
                            self.lineHadDot = true
                            self.lineLength = 1
                            i += 1
                            chunkStart = i
                            continue
                        }
                    }
                    if b >= 0x80 { self.sawEightBit = true }
                    self.lineLength += 1
                    if self.lineLength > self.maxLineLength - 2 { self.sawLongLine = true }
                    i += 1
                }
            }
            if !finished { flush(i) }
            consumed = i
        }
        input.moveReaderIndex(forwardBy: consumed)
        guard finished else { return nil }
        if self.overSize { return .tooLarge }
        if self.sawBareLineEnding { return .bareLineEnding }
        if self.sawLongLine { return .lineTooLong }
        return .accepted
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        self.receivedBytes += bytes.count
        guard !self.overSize else { return }
        if self.body.readableBytes + bytes.count > self.maxSize {
            self.overSize = true
            self.body.clear()
            return
        }
        self.body.writeBytes(bytes)
    }

    private mutating func appendByte(_ byte: UInt8) {
        withUnsafeBytes(of: byte) { self.append($0) }
    }
}
