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
        // The scan keeps its state in locals and stores it back once: the loop touches every byte.
        var atLineStart = self.atLineStart
        var pendingCR = self.pendingCR
        var lineHadDot = self.lineHadDot
        var lineLength = self.lineLength
        var sawBareLineEnding = self.sawBareLineEnding
        var sawLongLine = self.sawLongLine
        var sawEightBit = self.sawEightBit
        let longLine = self.maxLineLength - 2
        var consumed = 0
        var finished = false
        input.withUnsafeReadableBytes { bytes in
            var chunkStart = 0
            var i = 0
            while i < bytes.count {
                // Inside a line, eight bytes at a time while none of them is a CR, an LF or 8-bit.
                if !atLineStart && !pendingCR {
                    let start = i
                    while i + 8 <= bytes.count,
                          !Self.hasLineEndOrEightBit(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                    {
                        i += 8
                    }
                    if i > start {
                        lineLength += i - start
                        if lineLength > longLine { sawLongLine = true }
                        guard i < bytes.count else { break }
                    }
                }
                let b = bytes[i]
                if pendingCR {
                    pendingCR = false
                    if b == 0x0A {
                        // CRLF: a real line end.
                        if lineHadDot && lineLength == 1 {
                            finished = true
                            i += 1
                            break
                        }
                        self.append(Self.crlf)
                        atLineStart = true
                        lineHadDot = false
                        lineLength = 0
                        i += 1
                        chunkStart = i
                        continue
                    }
                    // A bare CR: kept, noted, and the line goes on (so no dot line can follow it:
                    // `<CRLF><CR>.<CRLF>` is not an end of data).
                    sawBareLineEnding = true
                    self.append(Self.cr)
                    atLineStart = false
                    lineLength += 1
                    chunkStart = i
                }
                switch b {
                case 0x0D:
                    self.append(bytes, chunkStart, i)
                    pendingCR = true
                    i += 1
                    chunkStart = i
                case 0x0A:
                    // A bare LF: not a line end (so no dot line can follow it).
                    sawBareLineEnding = true
                    atLineStart = false
                    lineLength += 1
                    i += 1
                default:
                    if atLineStart {
                        atLineStart = false
                        if b == UInt8(ascii: ".") {
                            self.append(bytes, chunkStart, i)
                            lineHadDot = true
                            lineLength = 1
                            i += 1
                            chunkStart = i
                            continue
                        }
                    }
                    if b >= 0x80 { sawEightBit = true }
                    lineLength += 1
                    if lineLength > longLine { sawLongLine = true }
                    i += 1
                }
            }
            if !finished { self.append(bytes, chunkStart, i) }
            consumed = i
        }
        self.atLineStart = atLineStart
        self.pendingCR = pendingCR
        self.lineHadDot = lineHadDot
        self.lineLength = lineLength
        self.sawBareLineEnding = sawBareLineEnding
        self.sawLongLine = sawLongLine
        self.sawEightBit = sawEightBit
        input.moveReaderIndex(forwardBy: consumed)
        guard finished else { return nil }
        if self.overSize { return .tooLarge }
        if sawBareLineEnding { return .bareLineEnding }
        if sawLongLine { return .lineTooLong }
        return .accepted
    }

    /// True when one of the eight bytes of `word` is CR or LF or has its high bit set. When no byte
    /// of `x` has its high bit set, `(x - 0x01…) & ~x` has a high bit set somewhere if and only if a
    /// byte of `x` is zero (a borrow may mark bytes above that zero too, which does not change the
    /// answer); a `word` with a high bit set gives true anyway.
    static func hasLineEndOrEightBit(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let cr = word ^ (ones &* 0x0D)
        let lf = word ^ (ones &* 0x0A)
        let zeroByte = ((cr &- ones) & ~cr) | ((lf &- ones) & ~lf)
        return (zeroByte | word) & 0x8080_8080_8080_8080 != 0
    }

    private static let crlf: StaticString = "\r\n"
    private static let cr: StaticString = "\r"

    private mutating func append(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) {
        if end > start { self.append(UnsafeRawBufferPointer(rebasing: bytes[start..<end])) }
    }

    private mutating func append(_ text: StaticString) {
        self.append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
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
}
