/// Metric names the monitor reads or writes itself (the workers' names are listed in `help`).
enum MonitorMetricNames {
    static let accepted = "mailer_accepted_total"
    static let acceptedRecipients = "mailer_accepted_recipients_total"
    static let delivered = "mailer_delivered_total"
    static let failed = "mailer_failed_total"
    static let deliverySeconds = "mailer_delivery_seconds"
    static let circuitOpen = "mailer_provider_circuit_open"
}
