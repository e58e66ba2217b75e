import IPC

/// Where a message goes: the route splits the recipients into legs, and each leg names the hosts to
/// try in order. Providers make one leg with every recipient; direct MX delivery (later) makes one
/// leg per recipient domain with that domain's MX hosts.
protocol ForwarderRoute: Sendable {
    func legs(for recipients: [String]) -> [ForwarderRouteLeg]
}

/// Recipients that share the hosts to try.
struct ForwarderRouteLeg: Sendable, Equatable {
    var recipients: [String]
    var hops: [ForwarderHop]
}

/// The upstream providers of the configuration, by ascending priority then file order (the legacy
/// `forwardHost` keys are one more provider, see `MailerConfig.orderedProviders`).
struct ForwarderProviderRoute: ForwarderRoute {
    let hops: [ForwarderHop]

    init(hops: [ForwarderHop]) { self.hops = hops }

    init(config: MailerConfig) {
        self.hops = config.orderedProviders.map(ForwarderHop.init(provider:))
    }

    func legs(for recipients: [String]) -> [ForwarderRouteLeg] {
        recipients.isEmpty ? [] : [ForwarderRouteLeg(recipients: recipients, hops: self.hops)]
    }
}
