/// Prepares a message for the DATA stage of a client (RFC 5321 §4.5.2): every line that starts with
/// a dot gets a second one, line ends become CRLF, and `.` CRLF ends the data.
///
/// The receiver only stores messages with CRLF line ends; a bare CR or bare LF that still shows up
/// (a message injected some other way) is sent as CRLF, so that no upstream ever sees a line end
/// it could read differently from us (SMTP smuggling).
public enum DotStuffing {
    /// The message, stuffed and terminated, ready to be written after `354`.
    public static func encode(_ message: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        var pendingCR = false
        for byte in message {
            if pendingCR {
                pendingCR = false
                out.append(0x0D)
                out.append(0x0A)
                atLineStart = true
                if byte == 0x0A { continue }
            }
            switch byte {
            case 0x0D:
                pendingCR = true
                continue
            case 0x0A:
                out.append(0x0D)
                out.append(0x0A)
                atLineStart = true
                continue
            case UInt8(ascii: ".") where atLineStart:
                out.append(UInt8(ascii: "."))
            default:
                break
            }
            out.append(byte)
            atLineStart = false
        }
        if pendingCR || !atLineStart {
            out.append(0x0D)
            out.append(0x0A)
        }
        out.append(contentsOf: [UInt8(ascii: "."), 0x0D, 0x0A])
        return out
    }
}
