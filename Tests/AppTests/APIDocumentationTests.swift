import Foundation
import Testing
import VaporTesting
@testable import App

/// The OpenAPI document is the contract: every registered route is documented, every documented
/// route exists, and the served document and page are the files in Resources/.
@Suite struct APIDocumentationTests {
    static func document() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: DirectoryConfiguration.detect().resourcesDirectory + "openapi.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static let methods = ["get", "put", "post", "delete", "patch", "head", "options"]

    @Test func everyRouteIsDocumentedAndEveryDocumentedRouteExists() async throws {
        try await TestApp.run(adjust: AuthMatrixTests.configure) { t in
            let doc = try Self.document()
            #expect((doc["openapi"] as? String)?.hasPrefix("3.1") == true)
            let paths = try #require(doc["paths"] as? [String: Any])
            var documented = Set<String>()
            for (path, item) in paths {
                for (method, _) in (item as? [String: Any] ?? [:]) where Self.methods.contains(method) {
                    documented.insert("\(method.uppercased()) \(path)")
                }
            }
            let registered = Set(t.app.routes.all.map { route in
                "\(route.method.rawValue) /" + route.path.map { c in
                    let s = c.description
                    return s.hasPrefix(":") ? "{\(s.dropFirst())}" : s
                }.joined(separator: "/")
            })
            #expect(registered.subtracting(documented).isEmpty, "undocumented routes: \(registered.subtracting(documented).sorted())")
            #expect(documented.subtracting(registered).isEmpty, "documented but not registered: \(documented.subtracting(registered).sorted())")
        }
    }

    @Test func everyErrorResponseUsesTheErrorShape() throws {
        let doc = try Self.document()
        let components = try #require(doc["components"] as? [String: Any])
        let schemas = try #require(components["schemas"] as? [String: Any])
        let error = try #require(schemas["Error"] as? [String: Any])
        #expect(Set(error["required"] as? [String] ?? []) == ["success", "error"])
        let shared = components["responses"] as? [String: Any] ?? [:]
        var problems: [String] = []
        for (path, item) in try #require(doc["paths"] as? [String: Any]) {
            for (method, op) in (item as? [String: Any] ?? [:]) where Self.methods.contains(method) {
                let op = op as? [String: Any] ?? [:]
                if op["operationId"] == nil { problems.append("\(method) \(path): no operationId") }
                let responses = op["responses"] as? [String: Any] ?? [:]
                if !responses.keys.contains(where: { $0.hasPrefix("2") || $0.hasPrefix("3") }) { problems.append("\(method) \(path): no success response") }
                // /ready's 503 is its own readiness report (which check failed), not an error.
                for (status, response) in responses where (Int(status) ?? 0) >= 400 && !(path == "/ready" && status == "503") {
                    var r = response as? [String: Any] ?? [:]
                    if let ref = r["$ref"] as? String { r = shared[String(ref.split(separator: "/").last!)] as? [String: Any] ?? [:] }
                    let json = (r["content"] as? [String: Any])?["application/json"] as? [String: Any]
                    let schemaRef = (json?["schema"] as? [String: Any])?["$ref"] as? String
                    if schemaRef != "#/components/schemas/Error" { problems.append("\(method) \(path) \(status): not the Error schema") }
                }
            }
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test func documentAndPageAreServed() async throws {
        try await TestApp.run { t in
            let json = try await t.send(.GET, "openapi.json")
            #expect(json.status == .ok && json.headers.contentType == .json)
            #expect((json.json["openapi"] as? String)?.hasPrefix("3.1") == true)
            let page = try await t.send(.GET, "docs")
            #expect(page.status == .ok && page.headers.contentType?.subType == "html")
            #expect(page.raw.contains("openapi.json"))
            // Works offline: nothing is loaded from another origin.
            #expect(!page.raw.contains("http://") && !page.raw.contains("https://"), "the docs page must not load anything external")
        }
    }
}
