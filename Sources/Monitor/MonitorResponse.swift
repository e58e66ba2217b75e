import Foundation
import NIOHTTP1

/// One HTTP answer: status, headers and a UTF-8 body.
struct MonitorResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: [(String, String)]
    var body: String

    static let jsonType = "application/json; charset=utf-8"
    static let prometheusType = "text/plain; version=0.0.4; charset=utf-8"

    static func json(_ status: HTTPResponseStatus, _ document: MonitorJSON) -> MonitorResponse {
        MonitorResponse(status: status, headers: [("Content-Type", Self.jsonType)], body: document.rendered() + "\n")
    }

    /// The original's error shape: `{"status":"error","error":…,"timestamp":…}`.
    static func error(_ status: HTTPResponseStatus, _ message: String, now: Date = Date(),
                      headers extra: [(String, String)] = []) -> MonitorResponse {
        var response = Self.json(status, .object([
            ("status", .string("error")),
            ("error", .string(message)),
            ("timestamp", .string(MonitorClock.rfc3339(now))),
        ]))
        response.headers += extra
        return response
    }

    /// `{"status":"ok","message":…}` plus any further fields.
    static func ok(_ message: String, _ extra: [(String, MonitorJSON)] = []) -> MonitorResponse {
        Self.json(.ok, .object([("status", .string("ok")), ("message", .string(message))] + extra))
    }

    func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}
