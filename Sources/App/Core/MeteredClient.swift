import Vapor

/// The HTTP client handed to the Agora and S3 code: counts failed calls (transport errors, 5xx,
/// and for Agora any 4xx) in `external_call_errors_total{system}`, and turns an unreachable
/// upstream into 502 `upstream_unavailable` instead of an internal error.
struct MeteredClient: Client {
    let base: any Client
    let metrics: AppMetrics
    let system: AppMetrics.ExternalSystem

    var eventLoop: any EventLoop { base.eventLoop }
    var byteBufferAllocator: ByteBufferAllocator { base.byteBufferAllocator }

    func delegating(to eventLoop: any EventLoop) -> any Client { MeteredClient(base: base.delegating(to: eventLoop), metrics: metrics, system: system) }
    func logging(to logger: Logger) -> any Client { MeteredClient(base: base.logging(to: logger), metrics: metrics, system: system) }
    func allocating(to allocator: ByteBufferAllocator) -> any Client { MeteredClient(base: base.allocating(to: allocator), metrics: metrics, system: system) }

    func send(_ request: ClientRequest) -> EventLoopFuture<ClientResponse> {
        let (metrics, system) = (metrics, system)
        return base.send(request).always { result in
            switch result {
            case .failure: metrics.externalError(system)
            case .success(let r) where r.status.code >= 500 || (system == .agora && r.status.code >= 400): metrics.externalError(system)
            case .success: break
            }
        }.flatMapErrorThrowing { _ in
            let what: String = switch system {
            case .agora: "Agora"
            case .email, .smtp: "The email provider"
            case .s3: "Storage"
            }
            throw APIError(.badGateway, "upstream_unavailable", "\(what) could not be reached; try again")
        }
    }
}
