import Foundation

/// A JSON document the monitor writes: an ordered tree, so that answers keep the original's field
/// order (`status`, `timestamp`, `details`) and read the same on every request.
///
/// Numbers that hold a whole value are written without a fraction (`100`, as Go's encoder writes a
/// float64), other doubles in Swift's shortest round-trip form; NaN and infinities become `null`.
enum MonitorJSON {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([MonitorJSON])
    case object([(String, MonitorJSON)])

    /// The document as compact UTF-8 text.
    func rendered() -> String {
        var out = ""
        self.write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null:
            out += "null"
        case .bool(let value):
            out += value ? "true" : "false"
        case .int(let value):
            out += String(value)
        case .double(let value):
            out += Self.number(value)
        case .string(let value):
            Self.quote(value, into: &out)
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, (key, value)) in members.enumerated() {
                if index > 0 { out += "," }
                Self.quote(key, into: &out)
                out += ":"
                value.write(to: &out)
            }
            out += "}"
        }
    }

    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    private static func quote(_ string: String, into out: inout String) {
        out += "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029:
                out += String(format: "\\u%04x", scalar.value)
            default:
                out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension MonitorJSON {
    /// A value from an optional: `null` when absent.
    static func optional<T>(_ value: T?, _ make: (T) -> MonitorJSON) -> MonitorJSON {
        value.map(make) ?? .null
    }
}
