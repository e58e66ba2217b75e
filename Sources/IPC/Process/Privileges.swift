import CMailerSys
import Foundation

/// Looking up and dropping to the run-as user.
public enum Privileges {
    public struct Account: Sendable {
        public let name: String
        public let uid: uid_t
        public let gid: gid_t
    }

    public struct DropError: Error, CustomStringConvertible {
        public let description: String
    }

    public static var isRoot: Bool { geteuid() == 0 }

    public static func lookup(_ user: String) throws -> Account {
        guard let pw = getpwnam(user) else {
            throw DropError(description:
                "the run-as user '\(user)' (config key 'user') does not exist; create it with: useradd -r -s /usr/sbin/nologin \(user)")
        }
        // The workers talk to the network: they never keep root, whatever the name says.
        guard pw.pointee.pw_uid != 0 else {
            throw DropError(description:
                "the run-as user '\(user)' (config key 'user') is root; workers must run as an unprivileged user such as 'mailer'")
        }
        return Account(name: user, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid)
    }

    /// setgroups (initgroups), setresgid, setresuid, no-new-privs, then proves that root cannot be regained.
    public static func drop(to account: Account) throws {
        guard initgroups(account.name, account.gid) == 0 else { throw DropError(description: "initgroups: \(err())") }
        guard csystem_setresgid(account.gid) == 0 else { throw DropError(description: "setresgid: \(err())") }
        guard csystem_setresuid(account.uid) == 0 else { throw DropError(description: "setresuid: \(err())") }
        guard csystem_set_no_new_privs() == 0 else { throw DropError(description: "no_new_privs: \(err())") }
        if setuid(0) == 0 || seteuid(0) == 0 {
            throw DropError(description: "root could be regained after dropping to \(account.name)")
        }
        guard getuid() == account.uid, geteuid() == account.uid, getgid() == account.gid, getegid() == account.gid
        else { throw DropError(description: "ids did not change") }
    }

    private static func err() -> String { String(cString: strerror(errno)) }
}
