import Foundation
import NIOConcurrencyHelpers

/// Queue identifiers: unique across processes and sortable by the time they were made.
///
/// Layout, 22 upper-case hex digits: 13 of microseconds since the epoch, 6 of the process id (all
/// of it: Linux pids stay below 2^22), 3 of a per-process counter. Two processes never share a pid
/// at the same time and one process never makes 4,096 ids within a microsecond, so two ids never
/// collide; should the clock step back onto a used microsecond, the spool refuses to overwrite.
public enum QueueID {
    private static let counter = NIOLockedValueBox<UInt32>(0)

    public static func make(now: Date = Date()) -> String {
        let micros = UInt64(max(0, now.timeIntervalSince1970 * 1_000_000))
        let sequence = self.counter.withLockedValue { value -> UInt32 in
            value = (value &+ 1) & 0xFFF
            return value
        }
        let pid = UInt32(CurrentProcess.id) & 0xFFFFFF
        return hex(micros, width: 13) + hex(UInt64(pid), width: 6) + hex(UInt64(sequence), width: 3)
    }

    /// True for strings that have the shape of an id (used before an id from a client becomes a path).
    public static func isValid(_ id: String) -> Bool {
        id.utf8.count == 22 && id.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 70) }
    }

    /// The time encoded in an id.
    public static func date(of id: String) -> Date? {
        guard isValid(id), let micros = UInt64(id.prefix(13), radix: 16) else { return nil }
        return Date(timeIntervalSince1970: Double(micros) / 1_000_000)
    }

    private static func hex(_ value: UInt64, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return digits.count >= width ? String(digits.suffix(width))
            : String(repeating: "0", count: width - digits.count) + digits
    }
}
