import Logging

/// A logger for tests that only shows critical messages.
let quietLogger: Logger = {
    var logger = Logger(label: "forwarder-tests")
    logger.logLevel = .critical
    return logger
}()
