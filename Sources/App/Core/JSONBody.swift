import Vapor

extension Request {
    /// The JSON body of a JSON route. Anything but `application/json` (or `…+json`, UTF-8) is
    /// refused with 415 unsupported_media_type before a byte is decoded — a form-encoded body or
    /// one without a content type is never guessed at.
    func json<T: Decodable>(_ type: T.Type) throws -> T {
        try requireJSONMediaType()
        return try content.decode(T.self, as: .json)
    }

    /// The same, for endpoints whose body may be absent (an empty body is nil).
    func optionalJSON<T: Decodable>(_ type: T.Type) throws -> T? {
        guard let body = body.data, body.readableBytes > 0 else { return nil }
        return try json(T.self)
    }

    private func requireJSONMediaType() throws {
        guard let media = headers.contentType else { throw Self.unsupportedMediaType }
        let isJSON = media.type.lowercased() == "application" && (media.subType.lowercased() == "json" || media.subType.lowercased().hasSuffix("+json"))
        let charset = media.parameters.first { $0.key.lowercased() == "charset" }?.value.lowercased()
        guard isJSON, charset == nil || charset == "utf-8" || charset == "utf8" else { throw Self.unsupportedMediaType }
    }

    static let unsupportedMediaType = APIError(.unsupportedMediaType, "unsupported_media_type",
                                               "Send the body as JSON with Content-Type: application/json")
}
