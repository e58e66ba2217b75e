import Foundation
import Logging
import Testing

@testable import IPC

/// The log line's layout, which operators grep and the end-to-end tests match:
/// `2026-11-29T15:04:05.123Z info mailer/receiver[1234] message key=value key2="a value"`.
@Suite struct MailerLogHandlerTests {
    @Test func aLineHasTimeLevelOriginMessageAndSortedMetadata() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mailer-log-\(UUID().uuidString)").path
        defer { unlink(path) }
        var handler = MailerLogHandler(label: "mailer/test", sink: LogSink(path: path))
        handler[metadataKey: "gen"] = "1"
        handler[metadataKey: "id"] = "from-handler"
        var logger = Logger(label: "mailer/test") { _ in handler }
        logger.logLevel = .info
        logger.info("accepted message", metadata: ["id": "0A1B", "subject": "two words", "to": "<b@example.net>"])
        logger.debug("not written")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[1].isEmpty, "one line, ending in a newline")
        let line = String(lines[0])
        let pattern = #/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info mailer/test\[(\d+)\] accepted message gen=1 id=0A1B subject="two words" to=<b@example.net>$/#
        let match = try #require(line.wholeMatch(of: pattern), "\(line)")
        #expect(Int32(match.1) == CurrentProcess.id)
    }
}
