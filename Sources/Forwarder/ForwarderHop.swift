import IPC

/// One host a route may try: where it is, how TLS is checked, and the credentials for AUTH.
struct ForwarderHop: Sendable, Hashable, CustomStringConvertible {
    enum Verification: Sendable, Hashable {
        /// Chain and host name checked against the system trust store.
        case system
        /// Chain and host name checked against the authorities in this PEM file.
        case caFile(String)
        /// Nothing checked (`insecureSkipVerify`, test rigs only).
        case none
    }

    /// The name in logs and metrics (the provider's `name`, or `host:port`).
    var name: String
    var host: String
    var port: Int
    /// TLS from the first byte (port 465) instead of STARTTLS.
    var implicitTLS: Bool
    var verification: Verification
    var username: String
    var password: String

    var credentials: (username: String, password: String)? {
        self.username.isEmpty ? nil : (self.username, self.password)
    }

    /// Credentials may go without TLS only to this machine.
    var isLoopback: Bool { Loopback.contains(host: self.host) }

    init(name: String, host: String, port: Int, implicitTLS: Bool = false, verification: Verification = .system,
         username: String = "", password: String = "") {
        self.name = name
        self.host = host
        self.port = port
        self.implicitTLS = implicitTLS
        self.verification = verification
        self.username = username
        self.password = password
    }

    init(provider: MailerConfig.Provider) {
        let verification: Verification = provider.insecureSkipVerify ? .none
            : provider.caFile.isEmpty ? .system : .caFile(provider.caFile)
        self.init(name: provider.name, host: provider.host, port: provider.port, implicitTLS: provider.ssl,
                  verification: verification, username: provider.username, password: provider.password)
    }

    /// Never shows the password.
    var description: String { "\(self.name) (\(self.host):\(self.port))" }

    static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.host == b.host && a.port == b.port && a.implicitTLS == b.implicitTLS
            && a.verification == b.verification && a.username == b.username && a.password == b.password
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(self.name)
        hasher.combine(self.host)
        hasher.combine(self.port)
    }
}
