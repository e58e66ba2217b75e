/// A configuration problem, naming the key (as a dotted path) and, where it can be found, its line.
public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let key: String
    public let line: Int?
    public let message: String

    public init(key: String, line: Int? = nil, message: String) {
        self.key = key
        self.line = line
        self.message = message
    }

    public var description: String {
        var text = "config error"
        if !self.key.isEmpty { text += " at key '\(self.key)'" }
        if let line = self.line { text += " (line \(line))" }
        return text + ": " + self.message
    }
}
