/// Label sets travel as `k=v` pairs joined by `,` (see `MonitorSnapshot.Series`).
enum MonitorLabels {
    static func parse(_ labels: String) -> [(String, String)] {
        labels.split(separator: ",", omittingEmptySubsequences: true).map { pair in
            guard let equals = pair.firstIndex(of: "=") else { return (String(pair), "") }
            return (String(pair[..<equals]), String(pair[pair.index(after: equals)...]))
        }
    }
}
