// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "LiveStreamBackend",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "App", targets: ["App"]),
        .library(name: "AgoraAccessToken", targets: ["AgoraAccessToken"]),
        .library(name: "Mailer", targets: ["Mailer"]),
        .library(name: "SigV4", targets: ["SigV4"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/vapor.git", from: "4.122.3"),
        .package(url: "https://github.com/vapor/fluent.git", from: "4.13.0"),
        .package(url: "https://github.com/vapor/fluent-sqlite-driver.git", from: "4.9.0"),
        .package(url: "https://github.com/vapor/fluent-postgres-driver.git", from: "2.14.0"),
        .package(url: "https://github.com/vapor/jwt.git", from: "5.2.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // System zlib: byte-identical deflate output to CPython/Java, which Agora's vectors need.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "AgoraAccessToken",
            dependencies: [
                "CZlib",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "SigV4",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "Mailer",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "App",
            dependencies: [
                "AgoraAccessToken",
                "Mailer",
                "SigV4",
                .product(name: "Vapor", package: "vapor"),
                .product(name: "Fluent", package: "fluent"),
                .product(name: "FluentSQLiteDriver", package: "fluent-sqlite-driver"),
                .product(name: "FluentPostgresDriver", package: "fluent-postgres-driver"),
                .product(name: "JWT", package: "jwt"),
                .product(name: "Crypto", package: "swift-crypto"),
                // RSA (RS256) for the FCM service-account assertion.
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(name: "OracleSupport", path: "Tests/OracleSupport"),
        .testTarget(
            name: "AgoraAccessTokenTests",
            dependencies: ["AgoraAccessToken", "OracleSupport"]
        ),
        .testTarget(
            name: "SigV4Tests",
            dependencies: ["SigV4", "OracleSupport"]
        ),
        .testTarget(
            name: "MailerTests",
            dependencies: ["Mailer"]
        ),
        .testTarget(
            name: "AppTests",
            dependencies: [
                "App",
                "SigV4",
                "AgoraAccessToken",
                "OracleSupport",
                .product(name: "VaporTesting", package: "vapor"),
            ]
        ),
    ]
)
