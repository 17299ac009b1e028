import Vapor

/// Runs the worker loop inside `serve` (started after boot, stopped and drained on shutdown).
final class WorkerService: LifecycleHandler, @unchecked Sendable {
    private var task: Task<Void, Never>?

    func didBootAsync(_ app: Application) async throws {
        let worker = app.deps.worker
        task = Task { await worker.run() }
    }

    func shutdownAsync(_ app: Application) async {
        app.deps.worker.stop()
        await task?.value
        await app.deps.mailTransport?.shutdown()
    }
}

/// Calls `handler` once when one of `signals` arrives.
final class SignalWatcher: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []

    init(signals: [Int32], handler: @escaping @Sendable () -> Void) {
        // A parent process may have spawned us with these blocked; we want them delivered.
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for s in signals {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}
