import Vapor

/// GET /openapi.json (the API's OpenAPI 3.1 document) and GET /docs (a self-contained page that
/// renders it; no CDN, works offline). Both files are read once at startup from Resources/.
struct APIDocsController: RouteCollection {
    let document: ByteBuffer
    let page: ByteBuffer

    init(resources: String) throws {
        document = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: resources + "openapi.json")))
        page = ByteBuffer(bytes: try Data(contentsOf: URL(fileURLWithPath: resources + "docs.html")))
    }

    func boot(routes: any RoutesBuilder) throws {
        routes.get("openapi.json") { _ in Self.response(document, .json) }
        routes.get("docs") { _ in Self.response(page, .html) }
    }

    private static func response(_ body: ByteBuffer, _ type: HTTPMediaType) -> Response {
        var headers = HTTPHeaders()
        headers.contentType = type
        headers.replaceOrAdd(name: .cacheControl, value: "public, max-age=300")
        return Response(status: .ok, headers: headers, body: .init(buffer: body))
    }
}
