// swift-tools-version:6.1
import PackageDescription
import Foundation

// charrnn is built from source on the machine that trains, so by default the numeric library is
// compiled for this CPU (AVX2/AVX-512 for the SIMD gate kernels). Set CHARRNN_PORTABLE=1 to build a
// binary that runs on any x86-64 (or other) CPU.
let portable = ProcessInfo.processInfo.environment["CHARRNN_PORTABLE"] != nil
var kernelFlags: [String] = []
#if arch(x86_64)
if !portable {
    kernelFlags += ["-target-cpu", "native"]
    // fused multiply-add in the packed GEMM only where the CPU has it (else it becomes a libm call)
    let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    if cpuinfo.contains(" fma ") { kernelFlags += ["-D", "CHARRNN_FMA"] }
}
#endif

// The HTTP server (`charrnn serve`, target CharRNNServer on Hummingbird) triples the build; CI's
// sanitizer runs set CHARRNN_NO_SERVER=1 to leave it (and the `serve` subcommand) out, so the library
// and its tests still run under ASan/TSan without building SwiftNIO twice more.
let withServer = ProcessInfo.processInfo.environment["CHARRNN_NO_SERVER"] == nil
var serverPackages: [Package.Dependency] = []
var serverTargets: [Target] = []
var toolDependencies: [Target.Dependency] = []
var toolSettings: [SwiftSetting] = [.define("CHARRNN_NO_SERVER")]
if withServer {
    // traits: [] leaves out swift-configuration support, which the server does not use
    // The NIO, logging and lifecycle packages are Hummingbird's own dependencies (same constraints as
    // its manifest, so resolution is unchanged); they are named because CharRNNServer imports them.
    serverPackages = [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0", traits: []),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.14.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
    ]
    // MARK: Server (the HTTP layer of `charrnn serve`; the wire format is CharRNNAPI's, the engine
    // CharRNN's) and its in-process router tests (HummingbirdTesting)
    serverTargets = [
        .target(name: "CharRNNServer", dependencies: [
            "CharRNN", "CharRNNAPI",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .testTarget(name: "CharRNNServerTests", dependencies: [
            "CharRNNServer",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
    ]
    toolDependencies = ["CharRNNServer"]
    toolSettings = []
}

let package = Package(
    name: "charrnn",
    products: [
        .executable(name: "charrnn", targets: ["charrnn"]),
        .library(name: "CharRNN", targets: ["CharRNN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ] + serverPackages,
    targets: [
        // MARK: System libraries
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "Cutf8proc", pkgConfig: "libutf8proc",
                       providers: [.apt(["libutf8proc-dev"])]),
        // MARK: Library
        // C kernels for instructions Swift cannot name (AVX512_BF16), each function compiled for its
        // own target and chosen at run time; a portable build leaves them out.
        .target(name: "CKernels",
                cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]
                    + (portable ? [.define("CHARRNN_PORTABLE")] : [])),
        .target(name: "CharRNN", dependencies: ["COpenBLAS", "Cutf8proc", "CKernels"],
                // The numeric kernels are optimised in debug builds too, so `swift test` stays fast.
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug)),
                                .unsafeFlags(kernelFlags),
                                // hot loops touch only raw buffers; skip the runtime exclusivity checks
                                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // MARK: API
        // The OpenAI-style wire format of `charrnn serve` (request decoding and limits, the error
        // object, responses and streamed events) without HTTP: built always, also with
        // CHARRNN_NO_SERVER, so the sanitizer runs and the request fuzzer still reach the decoder.
        .target(name: "CharRNNAPI", dependencies: ["CharRNN"]),
        // MARK: Tool
        .executableTarget(name: "charrnn", dependencies: [
            "CharRNN", "CharRNNAPI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ] + toolDependencies,
        // C stdio globals (stdout) in the CLI; the test-only fault hooks (charrnn/TestFaults.swift) in debug builds
        swiftSettings: [.swiftLanguageMode(.v5), .define("CHARRNN_FAULTS", .when(configuration: .debug))] + toolSettings),
    ] + serverTargets + [
        // MARK: Tests
        .testTarget(name: "CharRNNTests", dependencies: ["CharRNN", "CharRNNAPI"]),   // CharRNNAPI: the `request` fuzz target
        .testTarget(name: "CharRNNAPITests", dependencies: ["CharRNNAPI", "CharRNN"]),
        .testTarget(name: "charrnnTests", dependencies: ["charrnn", "CharRNN"]),   // CharRNN: the names its messages use (Setting)
        // CharRNN as another package uses it: `import CharRNN` without @testable, so only the public
        // API compiles (the README's "Use as a Swift library" example).
        .testTarget(name: "LibraryUseTests", dependencies: ["CharRNN"]),
    ]
)
