import Testing

@testable import IPC

@Suite struct LoopbackTests {
    @Test(arguments: ["127.0.0.1", "127.255.0.1", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"])
    func loopbackAddresses(address: String) {
        #expect(Loopback.contains(address: address))
        #expect(Loopback.contains(host: address))
    }

    @Test(arguments: ["128.0.0.1", "10.0.0.1", "::", "::2", "::ffff:10.0.0.1", "localhost", "", "127.0.0.1.evil.example"])
    func otherAddresses(address: String) {
        #expect(!Loopback.contains(address: address))
    }

    @Test func hostNames() {
        #expect(Loopback.contains(host: "localhost"))
        #expect(Loopback.contains(host: "LocalHost"))
        #expect(!Loopback.contains(host: "127.example.com"))
        #expect(!Loopback.contains(host: "smtp.example.com"))
    }
}
