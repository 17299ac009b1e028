/// Response fields that are part of the contract even when empty: encodes `nil` as JSON `null`
/// (Swift's synthesized Encodable would leave the key out).
@propertyWrapper
struct NullEncodable<T: Codable & Sendable>: Codable, Sendable {
    var wrappedValue: T?

    init(wrappedValue: T?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : try c.decode(T.self)
    }
}

extension KeyedDecodingContainer {
    func decode<T>(_ type: NullEncodable<T>.Type, forKey key: Key) throws -> NullEncodable<T> {
        try decodeIfPresent(type, forKey: key) ?? NullEncodable(wrappedValue: nil)
    }
}
