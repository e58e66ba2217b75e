import CMailerSys
import Foundation
import NIOCore

/// The maildir-style spool under the data directory. Every state change is one rename; a file is in
/// exactly one state directory at a time (a crash between the two steps of a rewrite can leave a
/// stale copy in `active/`, which recovery removes).
///
/// | directory          | meaning                                   | who moves a file out           | crash rule |
/// |--------------------|-------------------------------------------|--------------------------------|------------|
/// | `queue/tmp/`       | being written by a receiver               | that receiver (rename to new/) | a file whose writer pid is gone is deleted: it never got a 250 |
/// | `queue/new/`       | committed (fsync'd), not yet claimed      | a forwarder (rename to active/), admin hold | none needed |
/// | `queue/active/`    | claimed by a forwarder (flock held)       | the claiming forwarder         | unlocked files are claimed again: at-least-once, a duplicate is possible |
/// | `queue/deferred/`  | waiting for a retry; mtime = next attempt | a forwarder once due, admin    | none needed |
/// | `queue/hold/`      | held by an operator                       | admin release (to new/)        | none needed |
/// | `failed/`          | a recipient failed for good, or expired   | admin retry (to new/), cleanup | none needed |
/// | `queue/free/rN`    | a delivered file kept for reuse (≤ 256)   | a receiver (rename to tmp/), overwritten | none needed: not a message any more |
///
/// A spool file is `MAILER-SPOOL 1 <n>\n`, the envelope as n bytes of JSON, `\n`, then the message.
public final class Spool: @unchecked Sendable {
    /// The flushes a commit's durability rests on. Tests replace them to make them fail (a disk that
    /// reports an I/O error) and check what a failed commit leaves behind.
    public struct Flush: Sendable {
        /// The file's data and all its metadata (`fsync`): for a file whose mtime means something.
        public var file: @Sendable (Int32) -> Int32
        /// The file's data and what reading it back needs, its length and blocks, but not its
        /// timestamps (`fdatasync`). On a journaling file system an overwrite of a recycled file of
        /// the same length then commits no journal transaction (ext4 without a journal writes the
        /// inode either way).
        public var fileData: @Sendable (Int32) -> Int32
        public var directory: @Sendable (Int32) -> Int32

        /// `fileData` defaults to `file`.
        public init(file: @escaping @Sendable (Int32) -> Int32, fileData: (@Sendable (Int32) -> Int32)? = nil,
                    directory: @escaping @Sendable (Int32) -> Int32) {
            self.file = file
            self.fileData = fileData ?? file
            self.directory = directory
        }

        public static let system = Flush(file: { fsync($0) }, fileData: { fdatasync($0) }, directory: { fsync($0) })
    }

    public enum State: String, CaseIterable, Sendable {
        case tmp, new, active, deferred, hold, failed

        /// The states a message waits in (not being written, not finished).
        public static let queued: [State] = [.new, .active, .deferred, .hold]
    }

    public let dataDir: String
    private let queueDir: String
    private let flush: Flush
    private let syncLock = NSLock()
    /// One group-commit syncer per directory path.
    private var syncers: [String: GroupSync] = [:]

    /// At most this many delivered files wait in `queue/free/` to be reused (slot names `r0`…).
    public static let recycleSlots = 256
    private let recycleLock = NSLock()
    /// Names seen in `queue/free/` by the last scan, not yet taken.
    private var recycleNames: [String] = []
    /// When the last scan found nothing: the next one waits a little (uptime nanoseconds).
    private var recycleNextScan: UInt64 = 0
    private var recycleCounter = UInt32.random(in: 0..<UInt32(Spool.recycleSlots))

    public init(dataDir: String, flush: Flush = .system) {
        self.flush = flush
        self.dataDir = dataDir
        self.queueDir = (dataDir as NSString).appendingPathComponent("queue")
    }

    public func directory(_ state: State) -> String {
        switch state {
        case .failed: return (self.dataDir as NSString).appendingPathComponent("failed")
        default: return (self.queueDir as NSString).appendingPathComponent(state.rawValue)
        }
    }

    /// Delivered spool files kept for reuse, so that a new message overwrites an existing inode
    /// instead of allocating one (inode allocation and the create in `tmp/` were the biggest cost of a
    /// commit: see bench/README.md). Not a state: what is in here is garbage, never a message.
    public var recycleDirectory: String { (self.queueDir as NSString).appendingPathComponent("free") }

    /// Where local mode stores delivered messages as `.eml` files.
    public var localDirectory: String { (self.dataDir as NSString).appendingPathComponent("local") }

    public func path(_ state: State, _ id: String) -> String {
        (self.directory(state) as NSString).appendingPathComponent(id)
    }

    /// Creates every directory (mode 0750), owned by `owner` when given (the supervisor, as root).
    ///
    /// The tree belongs to the run-as user, who could plant symbolic links in it; root must never
    /// follow one. So every directory below `dataDir` is created and opened relative to its parent's
    /// descriptor with O_NOFOLLOW, and chowned through that descriptor.
    public func createDirectories(owner: (uid: uid_t, gid: gid_t)? = nil) throws {
        if mkdir(self.dataDir, 0o750) != 0 && errno != EEXIST { throw SpoolError("mkdir", path: self.dataDir) }
        let base = open(self.dataDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if base < 0 { throw SpoolError("open", path: self.dataDir) }
        defer { close(base) }
        if let owner = owner, fchown(base, owner.uid, owner.gid) != 0 { throw SpoolError("chown", path: self.dataDir) }
        let relative = ["queue", "local", "failed"] + State.allCases.filter { $0 != .failed }.map { "queue/\($0.rawValue)" }
            + ["queue/free"]
        for path in relative {
            let fd = try Self.openDirectory(relative: path, below: base, dataDir: self.dataDir, create: true)
            defer { close(fd) }
            if let owner = owner, fchown(fd, owner.uid, owner.gid) != 0 {
                throw SpoolError("chown", path: (self.dataDir as NSString).appendingPathComponent(path))
            }
        }
    }

    /// Opens (and with `create`, makes) a directory below `base`, one component at a time, never
    /// following a symbolic link. The caller closes the descriptor.
    public static func openDirectory(relative path: String, below base: Int32, dataDir: String, create: Bool,
                                     mode: mode_t = 0o750) throws -> Int32 {
        var parent = dup(base)
        for component in path.split(separator: "/").map(String.init) {
            if create && mkdirat(parent, component, mode) != 0 && errno != EEXIST {
                let error = SpoolError("mkdir", path: (dataDir as NSString).appendingPathComponent(path))
                close(parent)
                throw error
            }
            let next = openat(parent, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            let error = errno
            close(parent)
            if next < 0 {
                throw SpoolError(error == ELOOP || error == ENOTDIR ? "refusing a symbolic link or non-directory at" : "open",
                                 path: (dataDir as NSString).appendingPathComponent(path), errno: error)
            }
            parent = next
        }
        return parent
    }

    // MARK: - Receiving

    /// Writes a new message: `tmp/` → fsync → rename into `new/` → fsync of `new/`. When this returns the
    /// message survives a crash; when it throws, no file is left behind.
    public func enqueue(_ envelope: Envelope, parts: [ByteBuffer]) throws {
        let tmp = self.path(.tmp, "\(envelope.id).\(CurrentProcess.id)")
        // A recycled file (renamed from `free/` into `tmp/`, so no one else can take it) is
        // overwritten and, if it was longer, cut to length (a truncate costs a write of the inode
        // even when the length does not change); otherwise a new file is created.
        let recycled = self.takeRecycled(as: tmp)
        let final = self.path(.new, envelope.id)
        try self.writeDurably(tmp: tmp, final: final, into: self.directory(.new), reusing: recycled?.fd,
                              removeOnSyncFailure: true, replacing: false) { fd in
            let length = try SpoolFile.write(fd: fd, path: tmp, envelope: envelope, parts: parts)
            if let recycled, recycled.size > length, ftruncate(fd, off_t(length)) != 0 {
                throw SpoolError("truncate", path: tmp)
            }
        }
    }

    /// Local mode: keeps a delivered message as `local/<ID>.eml`, as durably as a queued one.
    public func storeLocalCopy(id: String, message: [UInt8]) throws {
        let directory = self.localDirectory
        let tmp = (directory as NSString).appendingPathComponent(".\(id).eml.tmp")
        let final = (directory as NSString).appendingPathComponent("\(id).eml")
        try self.writeDurably(tmp: tmp, final: final, into: directory, removeOnSyncFailure: false) { fd in
            _ = try message.withUnsafeBytes { try SpoolFile.writeAll(fd: fd, [$0], path: tmp) }
        }
    }

    /// The one way a file reaches a directory durably: `fill` writes it at `tmp` (a new file, or the
    /// recycled descriptor `reusing`), fsync, rename to `final`, then the directory's entry is made
    /// durable (shared by every writer in flight, `GroupSync`). A failure before the rename leaves no
    /// file; a failed directory sync removes `final` too when `removeOnSyncFailure` (a message that
    /// must not count as accepted). Unless `replacing`, an existing `final` is an error, never
    /// overwritten (a new message never takes the place of another). `whileLocked` runs after the
    /// directory sync with the new file still flock'd, so no forwarder can claim it meanwhile.
    private func writeDurably(tmp: String, final: String, into directory: String, reusing: Int32? = nil,
                              keepsTimes: Bool = false, removeOnSyncFailure: Bool, replacing: Bool = true,
                              whileLocked: (() -> Void)? = nil, fill: (Int32) throws -> Void) throws {
        let fd = reusing ?? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o640)
        if fd < 0 { throw SpoolError("create", path: tmp) }
        do {
            try fill(fd)
            if (keepsTimes ? self.flush.file : self.flush.fileData)(fd) != 0 { throw SpoolError("fsync", path: tmp) }
            if whileLocked != nil && flock(fd, LOCK_EX) != 0 { throw SpoolError("lock", path: tmp) }
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        defer { close(fd) }
        if (replacing ? rename(tmp, final) : csystem_rename_noreplace(tmp, final)) != 0 {
            let error = SpoolError("rename", path: final)
            unlink(tmp)
            throw error
        }
        do {
            try self.syncer(directory).sync()
        } catch {
            if removeOnSyncFailure { unlink(final) }
            throw error
        }
        whileLocked?()
    }

    /// Deletes files in `tmp/` whose writer is no longer running (their client never got a 250).
    @discardableResult
    public func removeAbandonedTemporaryFiles() -> Int {
        var removed = 0
        for name in self.names(in: .tmp) {
            guard let dot = name.lastIndex(of: "."), let pid = pid_t(name[name.index(after: dot)...]) else {
                unlink(self.path(.tmp, name))
                removed += 1
                continue
            }
            if kill(pid, 0) != 0 && errno == ESRCH {
                unlink(self.path(.tmp, name))
                removed += 1
            }
        }
        return removed
    }

    // MARK: - Listing

    /// File names in a state directory, oldest id first.
    public func names(in state: State) -> [String] {
        guard let dir = opendir(self.directory(state)) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Ids a forwarder may claim now: everything in `new/`, due files in `deferred/` (mtime ≤ now) and
    /// files in `active/` that no live forwarder holds.
    ///
    /// `newOnly` lists `new/` alone: what a wake-up after a commit needs, without a `stat` of every
    /// deferred file (a backlog of thousands while a provider is down) for each message accepted.
    public func claimable(now: Date = Date(), newOnly: Bool = false) -> [(id: String, state: State)] {
        var result = self.names(in: .new).filter(QueueID.isValid).map { (id: $0, state: State.new) }
        if newOnly { return result }
        let nowSeconds = Int(now.timeIntervalSince1970)
        for id in self.names(in: .deferred) where QueueID.isValid(id) {
            var st = stat()
            if stat(self.path(.deferred, id), &st) == 0 && Int(st.st_mtim.tv_sec) <= nowSeconds {
                result.append((id: id, state: .deferred))
            }
        }
        result += self.names(in: .active).filter(QueueID.isValid).map { (id: $0, state: State.active) }
        return result
    }

    public func count(_ state: State) -> Int { self.names(in: state).count }

    // MARK: - Claiming and outcomes

    /// Takes a message for delivery: opens it, takes an exclusive flock (held until the claim is
    /// finished or the process dies), checks the file is still the one named, and renames it into
    /// `active/`. Returns nil when someone else holds it or it moved on.
    public func claim(_ id: String, from state: State) -> ClaimedMessage? {
        let source = self.path(state, id)
        let fd = open(source, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, Self.sameFile(fd: fd, path: source) else {
            close(fd)
            return nil
        }
        if state == .active {
            // A leftover of a crash between writing the next state's copy and removing this one.
            for other in [State.deferred, .failed, .new, .hold] where access(self.path(other, id), F_OK) == 0 {
                unlink(source)
                close(fd)
                return nil
            }
        } else if rename(source, self.path(.active, id)) != 0 {
            close(fd)
            return nil
        }
        do {
            let (envelope, offset) = try SpoolFile.readEnvelope(fd: fd, path: source)
            return ClaimedMessage(spool: self, fd: fd, envelope: envelope, bodyOffset: offset)
        } catch {
            // A file that cannot be parsed is kept for a person to look at, not delivered.
            _ = rename(self.path(.active, id), self.path(.failed, id))
            close(fd)
            return nil
        }
    }

    /// All recipients are done and none failed: the message leaves the spool.
    public func finishDelivered(_ claim: ClaimedMessage) {
        let path = self.path(.active, claim.envelope.id)
        if !self.recycle(path) { unlink(path) }
        claim.release()
    }

    /// Some recipients wait for a retry: a new copy with the updated envelope goes to `deferred/`,
    /// its mtime set to the next attempt.
    public func finishDeferred(_ claim: ClaimedMessage, envelope: Envelope, until: Date) throws {
        try self.rewrite(claim, envelope: envelope, into: .deferred, mtime: until)
    }

    /// A recipient failed for good (or the message expired): a copy, readable by a person, goes to `failed/`.
    public func finishFailed(_ claim: ClaimedMessage, envelope: Envelope) throws {
        try self.rewrite(claim, envelope: envelope, into: .failed, mtime: nil)
    }

    /// Gives a claimed message back untouched (pause, shutdown before an attempt).
    public func unclaim(_ claim: ClaimedMessage) {
        _ = rename(self.path(.active, claim.envelope.id), self.path(.new, claim.envelope.id))
        claim.release()
    }

    private func rewrite(_ claim: ClaimedMessage, envelope: Envelope, into state: State, mtime: Date?) throws {
        let id = claim.envelope.id
        let tmp = self.path(.tmp, "\(id).\(CurrentProcess.id)")
        try self.writeDurably(tmp: tmp, final: self.path(state, id), into: self.directory(state),
                              keepsTimes: mtime != nil, removeOnSyncFailure: false) { fd in
            try SpoolFile.write(fd: fd, path: tmp, envelope: envelope, parts: [])
            try SpoolFile.copy(from: claim.fd, offset: claim.bodyOffset, to: fd, path: tmp)
            if let mtime = mtime {
                let seconds = Int(mtime.timeIntervalSince1970)
                var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
                futimens(fd, &times)
            }
        }
        unlink(self.path(.active, id))
        claim.release()
    }

    // MARK: - Operator actions

    /// Finds a message in any state but `tmp/`.
    public func locate(_ id: String) -> State? {
        guard QueueID.isValid(id) else { return nil }
        return [State.active, .new, .deferred, .hold, .failed].first { access(self.path($0, id), F_OK) == 0 }
    }

    /// Reads the envelope of a message at rest.
    public func envelope(of id: String, in state: State) throws -> Envelope {
        let path = self.path(state, id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SpoolError("open", path: path) }
        defer { close(fd) }
        return try SpoolFile.readEnvelope(fd: fd, path: path).0
    }

    /// Reads the message (without envelope) of a message at rest.
    public func message(of id: String, in state: State) throws -> [UInt8] {
        let path = self.path(state, id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SpoolError("open", path: path) }
        defer { close(fd) }
        let offset = try SpoolFile.readEnvelope(fd: fd, path: path).1
        return try SpoolFile.readAll(fd: fd, from: offset, path: path)
    }

    /// Moves a message between resting states (hold, release, retry). Failed recipients become
    /// pending again when a message leaves `failed/`, and the retry clock starts over.
    public func move(_ id: String, from: State, to: State) throws {
        precondition(from != .active && to != .active && from != .tmp && to != .tmp, "only resting states move")
        if from == .failed || from == .deferred {
            let source = self.path(from, id)
            let fd = open(source, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw SpoolError("open", path: source) }
            defer { close(fd) }
            let stored = try SpoolFile.readEnvelope(fd: fd, path: source)
            var envelope = stored.0
            let offset = stored.1
            if from == .failed {
                for i in envelope.recipients.indices where envelope.recipients[i].state == .failed {
                    envelope.recipients[i].state = .pending
                }
                envelope.receivedAt = Date().timeIntervalSince1970
                envelope.attempts = 0
            }
            envelope.nextAttemptAt = nil
            let tmp = self.path(.tmp, "\(id).\(CurrentProcess.id)")
                // The old copy goes while the new one is still locked: a forwarder that claimed the new
            // copy first could put a fresh `failed/ID` in place that this unlink would then remove.
            try self.writeDurably(tmp: tmp, final: self.path(to, id), into: self.directory(to),
                                  removeOnSyncFailure: false, whileLocked: { unlink(source) }) { out in
                try SpoolFile.write(fd: out, path: tmp, envelope: envelope, parts: [])
                try SpoolFile.copy(from: fd, offset: offset, to: out, path: tmp)
            }
            return
        }
        if rename(self.path(from, id), self.path(to, id)) != 0 { throw SpoolError("rename", path: self.path(from, id)) }
        try self.syncer(self.directory(to)).sync()
    }

    /// Deletes a message at rest.
    public func remove(_ id: String, from state: State) throws {
        if unlink(self.path(state, id)) != 0 { throw SpoolError("unlink", path: self.path(state, id)) }
    }

    // MARK: - Recycling delivered files

    /// Moves a finished file into `free/` instead of unlinking it. The slot name comes from a
    /// counter, so `free/` never holds more than `recycleSlots` files: a slot still taken is
    /// replaced (its old inode is freed, as an unlink would have done). False when `free/` is missing.
    func recycle(_ path: String) -> Bool {
        self.recycleLock.lock()
        self.recycleCounter = (self.recycleCounter &+ 1) % UInt32(Self.recycleSlots)
        let slot = self.recycleCounter
        self.recycleLock.unlock()
        return rename(path, (self.recycleDirectory as NSString).appendingPathComponent("r\(slot)")) == 0
    }

    /// Takes a file from `free/` by renaming it to `path` (the rename is the claim: of several
    /// takers only one succeeds) and opens it for writing; nil when none is there. `size` is its
    /// current length.
    func takeRecycled(as path: String) -> (fd: Int32, size: Int)? {
        for _ in 0..<8 {
            guard let name = self.nextRecycledName() else { return nil }
            let source = (self.recycleDirectory as NSString).appendingPathComponent(name)
            guard rename(source, path) == 0 else { continue }  // someone else took it
            let fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW)
            if fd >= 0 {
                var st = stat()
                if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_nlink == 1 && st.st_uid == Self.owner {
                    return (fd, Int(st.st_size))
                }
                close(fd)
            }
            unlink(path)
        }
        return nil
    }

    /// The user this process runs as, which owns every file it may reuse (it does not change after
    /// the worker dropped its privileges, before any spool is opened).
    private static let owner = geteuid()

    private func nextRecycledName() -> String? {
        self.recycleLock.lock()
        defer { self.recycleLock.unlock() }
        if let name = self.recycleNames.popLast() { return name }
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= self.recycleNextScan else { return nil }
        var names: [String] = []
        if let dir = opendir(self.recycleDirectory) {
            while let entry = readdir(dir) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                }
                if name.hasPrefix("r") { names.append(name) }
            }
            closedir(dir)
        }
        // Nothing there (local mode, a stopped forwarder, a backlog): look again in 50 ms, not per message.
        if names.isEmpty { self.recycleNextScan = now + 50_000_000 }
        self.recycleNames = names
        return self.recycleNames.popLast()
    }

    // MARK: - Helpers

    private func syncer(_ directory: String) throws -> GroupSync {
        self.syncLock.lock()
        defer { self.syncLock.unlock() }
        if let existing = self.syncers[directory] { return existing }
        let made = try GroupSync(directory: directory, flush: self.flush.directory)
        self.syncers[directory] = made
        return made
    }

    static func sameFile(fd: Int32, path: String) -> Bool {
        var a = stat()
        var b = stat()
        guard fstat(fd, &a) == 0, stat(path, &b) == 0 else { return false }
        return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_nlink > 0
    }
}

/// A message a forwarder holds: the open, flock'ed file and its envelope. The lock goes away with
/// the process, so a forwarder killed mid-delivery leaves the message claimable again.
public final class ClaimedMessage: @unchecked Sendable {
    public let fd: Int32
    public let envelope: Envelope
    public let bodyOffset: Int
    private weak var spool: Spool?
    private var open = true
    private let lock = NSLock()

    init(spool: Spool, fd: Int32, envelope: Envelope, bodyOffset: Int) {
        self.spool = spool
        self.fd = fd
        self.envelope = envelope
        self.bodyOffset = bodyOffset
    }

    /// The message as stored (CRLF line ends, headers added by the receiver included).
    public func readMessage() throws -> [UInt8] {
        try SpoolFile.readAll(fd: self.fd, from: self.bodyOffset, path: self.envelope.id)
    }

    func release() {
        self.lock.lock()
        defer { self.lock.unlock() }
        if self.open {
            close(self.fd)
            self.open = false
        }
    }

    deinit { self.release() }
}
