import Testing

@testable import Forwarder

@Suite struct ForwarderSmokeTests {
    @Test func moduleLoads() { #expect(Bool(true)) }
}
