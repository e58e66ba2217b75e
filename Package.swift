// swift-tools-version:6.0
import PackageDescription

/// Release builds let the compiler specialise and inline the code of one of these modules into
/// another (the message path crosses SMTPCore, IPC, Receiver and Forwarder): about 9 % less CPU per
/// message and 10 % more messages a second in `bench/` (bench/README.md, change 11).
let acrossModules: [SwiftSetting] = [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]

let package = Package(
    name: "mailer",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mailer", targets: ["Supervisor"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
    ],
    targets: [
        // Thin C shims for what Glibc does not export (closefrom in posix_spawn, prctl, pipe2).
        .target(name: "CMailerSys"),
        // The SMTP protocol: commands, replies, framing, server and client state machines. No sockets.
        .target(
            name: "SMTPCore",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: acrossModules
        ),
        // What the processes share: configuration, the spool, pipe messages, inherited fds, worker bootstrap.
        .target(
            name: "IPC",
            dependencies: [
                "CMailerSys",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: acrossModules
        ),
        .target(
            name: "Receiver",
            dependencies: [
                "IPC", "SMTPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: acrossModules
        ),
        .target(
            name: "Forwarder",
            dependencies: [
                "IPC", "SMTPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: acrossModules
        ),
        .target(
            name: "Monitor",
            dependencies: [
                "IPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "Supervisor",
            dependencies: [
                "IPC", "Receiver", "Forwarder", "Monitor", "CMailerSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "SMTPCoreTests", dependencies: ["SMTPCore"]),
        .testTarget(name: "IPCTests", dependencies: ["IPC"]),
        .testTarget(name: "ReceiverTests", dependencies: ["Receiver", "IPC", "SMTPCore"]),
        .testTarget(name: "ForwarderTests", dependencies: ["Forwarder", "IPC", "SMTPCore"]),
        .testTarget(name: "MonitorTests", dependencies: ["Monitor", "IPC"]),
    ],
    swiftLanguageModes: [.v5]
)
