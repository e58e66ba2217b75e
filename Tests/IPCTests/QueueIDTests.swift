import Foundation
import Testing

@testable import IPC

@Suite struct QueueIDTests {
    @Test func idsAreValidUniqueAndSortedByTime() {
        let ids = (0..<1000).map { _ in QueueID.make() }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy(QueueID.isValid))
        let early = QueueID.make(now: Date(timeIntervalSince1970: 1_000_000))
        let late = QueueID.make(now: Date(timeIntervalSince1970: 2_000_000))
        #expect(early < late)
        #expect(QueueID.date(of: late)?.timeIntervalSince1970 == 2_000_000)
        #expect(!QueueID.isValid("../../etc/passwd"))
    }

    @Test func theWholePidIsInTheId() {
        let id = QueueID.make()
        #expect(id.count == 22)
        #expect(Int32(id.dropFirst(13).prefix(6), radix: 16) == getpid())
    }
}
