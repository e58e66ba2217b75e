import Testing

@testable import Receiver

@Suite struct ReceiverSmokeTests {
    @Test func moduleLoads() { #expect(Bool(true)) }
}
