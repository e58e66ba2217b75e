import Foundation
import NIOHTTP1

/// One HTTP request as the router sees it: no channel, no socket, so that every answer can be
/// tested by building one of these by hand.
struct MonitorRequest: Sendable {
    var method: HTTPMethod
    /// The request target as sent (`/metrics?format=json`).
    var uri: String
    var headers: HTTPHeaders
    /// The client's IP address as text (`127.0.0.1`, `::1`); nil when the transport has none.
    var clientAddress: String?
    var body: [UInt8]

    init(method: HTTPMethod, uri: String, headers: HTTPHeaders = HTTPHeaders(), clientAddress: String? = "127.0.0.1",
         body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.clientAddress = clientAddress
        self.body = body
    }

    /// The path without the query, percent-decoded, a trailing `/` dropped; nil when the target is not
    /// an origin-form URI.
    var path: String? {
        guard self.uri.hasPrefix("/"), let components = URLComponents(string: self.uri) else { return nil }
        var path = components.path
        if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    /// The query parameters (the first value of each name wins).
    var query: [String: String] {
        guard let items = URLComponents(string: self.uri)?.queryItems else { return [:] }
        var result: [String: String] = [:]
        for item in items where result[item.name] == nil { result[item.name] = item.value ?? "" }
        return result
    }
}
