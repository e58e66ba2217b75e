import Testing

@testable import SMTPCore

@Suite struct SMTPCoreSmokeTests {
    @Test func moduleLoads() { #expect(Bool(true)) }
}
