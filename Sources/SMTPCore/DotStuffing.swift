/// Prepares a message for the DATA stage of a client (RFC 5321 §4.5.2): every line that starts with
/// a dot gets a second one, line ends become CRLF, and `.` CRLF ends the data.
///
/// The receiver only stores messages with CRLF line ends; a bare CR or bare LF that still shows up
/// (a message injected some other way) is sent as CRLF, so that no upstream ever sees a line end
/// it could read differently from us (SMTP smuggling).
public enum DotStuffing {
    /// The message, stuffed and terminated, ready to be written after `354`.
    ///
    /// Works line by line on the contiguous bytes: each line's text is copied in one piece, so the
    /// cost is a scan for line ends plus one copy, not an append per byte.
    public static func encode(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        message.withUnsafeBufferPointer { bytes in
            let count = bytes.count
            var index = 0
            while index < count {
                if atLineStart && bytes[index] == UInt8(ascii: ".") { out.append(UInt8(ascii: ".")) }
                var end = index
                while end < count && bytes[end] != 0x0D && bytes[end] != 0x0A { end += 1 }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<end]))
                guard end < count else {
                    atLineStart = end == index
                    index = end
                    break
                }
                // CRLF, a bare CR or a bare LF: each ends the line as CRLF.
                out.append(0x0D)
                out.append(0x0A)
                index = bytes[end] == 0x0D && end + 1 < count && bytes[end + 1] == 0x0A ? end + 2 : end + 1
                atLineStart = true
            }
        }
        if !atLineStart {
            out.append(0x0D)
            out.append(0x0A)
        }
        out.append(contentsOf: [UInt8(ascii: "."), 0x0D, 0x0A])
        return out
    }
}
