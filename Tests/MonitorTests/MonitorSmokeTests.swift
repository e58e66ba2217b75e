import Testing

@testable import Monitor

@Suite struct MonitorSmokeTests {
    @Test func moduleLoads() { #expect(Bool(true)) }
}
