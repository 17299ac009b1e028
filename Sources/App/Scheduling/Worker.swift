import Fluent
import Foundation
import Logging
import NIOConcurrencyHelpers
import SQLKit

/// The one worker loop: claims due jobs and due deliveries from the database under a lease,
/// runs them, and sleeps until the next one is due (at most a second, or until woken).
/// Any number of workers, in any number of processes, can share one database.
final class Worker: Sendable {
    typealias Handler = @Sendable (Job, any Database) async throws -> JobResult
    typealias Handlers = [JobKind: Handler]

    /// `requeue`: not finished, through no fault of the job (the worker is stopping): back to the
    /// queue, due now, the attempt not counted.
    enum JobResult: Sendable, Equatable { case done, skipped(String), requeue(String) }

    let db: any Database
    let clock: AppClock
    let logger: Logger
    let sender: DeliverySender?
    let handlers: Handlers
    let settings: AppConfig.WorkerSettings
    let wake: WakeSignal
    let id: String
    let jobRetry: Backoff
    /// Host-platform webhooks, sent by their own loop inside this worker.
    let webhooks: WebhookDispatcher?
    /// Pushes (APNs, FCM), by their own loop inside this worker.
    let push: PushSender?
    /// Emails this process's fan-out handed over, rows not written yet (sent before any claimed ones).
    let local: LocalDeliveries?

    private let jobLease: Lease<JobStatus>
    private let deliveryLease: Lease<DeliveryStatus>
    private let held = HeldRows()
    private let stopRequested = NIOLockedValueBox(false)
    private let running = NIOLockedValueBox(false)
    static let maxConcurrentJobs = 4

    /// True while `run()` is looping (GET /ready checks it when the worker runs inside `serve`).
    var isRunning: Bool { running.withLockedValue { $0 } }
    private var isStopping: Bool { stopRequested.withLockedValue { $0 } }

    /// Graceful stop (SIGTERM): `run()` stops claiming, lets in-flight work finish for up to
    /// `shutdownGraceSeconds`, puts whatever is still unfinished back in the queue, and returns.
    func stop() {
        stopRequested.withLockedValue { $0 = true }
        // Emails handed over and not yet sent stay unsent: their fan-out jobs go back to the queue.
        local?.close()
        wake.wake()
    }

    init(db: any Database, clock: AppClock, logger: Logger, sender: DeliverySender?, handlers: Handlers,
         settings: AppConfig.WorkerSettings, wake: WakeSignal, jobRetry: Backoff = Backoff(base: 5, cap: 600), webhooks: WebhookDispatcher? = nil,
         push: PushSender? = nil, id: String = Worker.makeID(), local: LocalDeliveries? = nil) {
        self.local = local
        self.webhooks = webhooks
        self.push = push
        self.db = db
        self.clock = clock
        self.logger = logger
        self.sender = sender
        self.handlers = handlers
        self.settings = settings
        self.wake = wake
        self.jobRetry = jobRetry
        self.id = id
        jobLease = Lease(table: Job.schema, workerID: id, duration: settings.leaseSeconds)
        deliveryLease = Self.deliveryLease(id: id, settings: settings)
    }

    private var sql: any SQLDatabase { db.sql }

    /// A worker's lease holder name: host, process, and a random part (several workers per process in tests).
    static func makeID() -> String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))"
    }

    /// The lease a worker named `id` holds its deliveries under.
    static func deliveryLease(id: String, settings: AppConfig.WorkerSettings) -> Lease<DeliveryStatus> {
        Lease(table: Delivery.schema, workerID: id, duration: settings.leaseSeconds)
    }

    /// Runs until `stop()` (or cancellation), then drains as `stop()` describes.
    func run() async {
        running.withLockedValue { $0 = true }
        logger.info("worker started", metadata: ["worker": "\(id)"])
        await withDiscardingTaskGroup { group in
            group.addTask { await self.renewLeases() }
            if let webhooks { group.addTask { await webhooks.run(isStopping: { [self] in self.isStopping }) } }
            if let push { group.addTask { await push.run(isStopping: { [self] in self.isStopping }) } }
            while !Task.isCancelled && !isStopping {
                do {
                    try await claimAndStart(in: &group)
                    await housekeepingIfDue()
                } catch {
                    logger.error("worker pass failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
                }
                // While the email window is nearly full, every finished email wakes the loop: just
                // wait for the next one instead of asking the database when something falls due.
                await wake.wait(timeout: windowNearlyFull ? .seconds(1) : ((try? await sleepTime()) ?? .seconds(1)))
            }
            running.withLockedValue { $0 = false }
            local?.close()
            let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(settings.shutdownGraceSeconds * 1000)))
            while !Task.isCancelled, held.count(.jobs) + inFlight > 0, ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(50))
            }
            await releaseHeld()
            group.cancelAll()
        }
        logger.info("worker stopped", metadata: ["worker": "\(id)"])
    }

    /// Rows still leased by this worker go back to the queue now instead of after their lease.
    private func releaseHeld() async {
        // A fan-out whose emails are still with the relay keeps its job until its lease expires: released
        // now, another worker would run it again and send those emails a second time.
        let jobs = held.count(.handed) > 0 ? [] : held.ids(.jobs), deliveries = held.ids(.deliveries)
        guard !jobs.isEmpty || !deliveries.isEmpty else { return }
        logger.warning("releasing unfinished work", metadata: ["jobs": "\(jobs.count)", "deliveries": "\(deliveries.count)"])
        do {
            try await jobLease.release(jobs, now: clock.now(), on: sql)
            try await deliveryLease.release(deliveries, now: clock.now(), on: sql)
        } catch {
            logger.error("releasing rows failed; their leases expire instead", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
    }

    /// Emails being sent: claimed rows and handed-over ones.
    private var inFlight: Int { held.count(.deliveries) + held.count(.handed) }

    /// Deliveries are claimed in batches of at least a quarter of the window.
    private var windowNearlyFull: Bool {
        let inFlight = inFlight
        return sender != nil && inFlight > 0 && settings.maxInFlight - inFlight < max(1, settings.maxInFlight / 4)
    }

    /// Housekeeping (pruning old rows) at most every `Housekeeping.interval` of this worker's clock.
    private let lastHousekeeping = NIOLockedValueBox<Date?>(nil)

    private func housekeepingIfDue() async {
        let now = clock.now()
        let due = lastHousekeeping.withLockedValue { last in
            guard last.map({ now.timeIntervalSince($0) >= Housekeeping.interval || now < $0 }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        do {
            let pruned = try await Housekeeping.run(on: sql, now: now)
            if pruned != Housekeeping.Result() {
                logger.info("housekeeping", metadata: ["notices": "\(pruned.notices)", "jobs": "\(pruned.jobs)", "outbox": "\(pruned.outbox)", "webhooks": "\(pruned.webhooks)"])
            }
        } catch {
            logger.warning("housekeeping failed", metadata: ["error": "\(String(reflecting: type(of: error)))"])
        }
    }

    /// Job claims while emails stream out are at most every 100 ms (not once per finished email).
    private let lastJobClaim = NIOLockedValueBox(ContinuousClock.now - .seconds(1))

    /// The local queue's notices as read at most `localNoticeReuse` ago. A batch of the local queue
    /// is a few dozen emails, a few milliseconds of sending: reading the notice (a three-table join,
    /// mostly planning on PostgreSQL) for every batch cost more than the rows' own outcome writes. A
    /// change to a stream reaches the emails taken from the local queue within this bound.
    private func localNotices(_ streams: Set<String>) async throws -> [String: DeliverySender.SharedNotice] {
        let now = ContinuousClock.now
        var fresh: [String: DeliverySender.SharedNotice] = [:]
        let stale = localNoticeCache.withLockedValue { cache in
            streams.filter { s in
                guard let (notice, readAt) = cache[s], readAt.duration(to: now) < Self.localNoticeReuse else { return true }
                fresh[s] = notice
                return false
            }
        }
        guard !stale.isEmpty else { return fresh }
        let loaded = try await DeliverySender.Notice.load(stale, on: sql)
        localNoticeCache.withLockedValue { cache in
            cache = cache.filter { $0.value.readAt.duration(to: now) < Self.localNoticeReuse }
            for (s, notice) in loaded { cache[s] = (notice, now) }
        }
        return fresh.merging(loaded) { _, read in read }
    }

    static let localNoticeReuse: Duration = .milliseconds(25)
    private let localNoticeCache = NIOLockedValueBox<[String: (notice: DeliverySender.SharedNotice, readAt: ContinuousClock.Instant)]>([:])

    private func claimAndStart(in group: inout DiscardingTaskGroup) async throws {
        let now = clock.now()
        let jobSlots = Self.maxConcurrentJobs - held.count(.jobs)
        let jobsDue = inFlight == 0 || lastJobClaim.withLockedValue { last in
            guard last.duration(to: .now) >= .milliseconds(100) else { return false }
            last = .now
            return true
        }
        for claimed in try await jobLease.claim(limit: jobsDue ? jobSlots : 0, now: now, on: sql) {
            held.add(.jobs, claimed.id)
            group.addTask {
                await self.runJob(claimed.id)
                self.held.remove(.jobs, claimed.id)
                self.wake.wake()
            }
        }
        guard let sender else { return }
        guard !windowNearlyFull else { return }
        // The provider refused our key: nothing is claimed (no attempt used up) until the pause ends,
        // and what the fan-out handed over is queued in the database (rows written, attempt not counted).
        if let pause = sender.transport.pausedReason {
            if let local { park(local.take(local.capacity), reason: pause, sender: sender, in: &group) }
            return
        }
        var deliverySlots = settings.maxInFlight - inFlight
        var rows: [DeliverySender.Row] = []
        // First what this process's fan-out handed over: only its notice is read again (see
        // `localNotices`), so a stream ended, cancelled or edited meanwhile is noticed.
        if let local, deliverySlots > 0, case let handed = local.take(deliverySlots), !handed.isEmpty {
            for row in handed { held.add(.handed, row.id) }
            deliverySlots -= handed.count
            do {
                let notices = try await localNotices(Set(handed.map(\.stream_id)))
                for var row in handed {
                    guard let notice = notices[row.stream_id] else { // deleted meanwhile: nothing to send or record
                        done(row, recorded: true)
                        continue
                    }
                    row.shared = notice
                    rows.append(row)
                }
            } catch {
                // Not sent: their fan-out job runs again and sends them.
                for row in handed { done(row, recorded: false) }
                throw error
            }
        }
        let claimed = try await deliveryLease.claim(limit: rows.isEmpty ? deliverySlots : 0, now: now, on: sql)
        if !claimed.isEmpty {
            for c in claimed { held.add(.deliveries, c.id) }
            let loaded = try await sender.load(claimed.map(\.id), on: sql)
            let found = Set(loaded.map(\.id))
            for c in claimed where !found.contains(c.id) { held.remove(.deliveries, c.id) } // deleted meanwhile
            rows += loaded
        }
        for row in rows {
            group.addTask { self.done(row, recorded: await sender.process(row, lease: self.deliveryLease, on: self.db)) }
        }
    }

    /// A row this worker was sending is finished: out of the in-flight count, its fan-out told (when
    /// handed over) whether its row was written, and the loop woken for the next one.
    private func done(_ row: DeliverySender.Row, recorded: Bool) {
        held.remove(row.handover == nil ? .deliveries : .handed, row.id)
        row.handover?.finished(recorded: recorded)
        wake.wake()
    }

    /// Handed-over emails that cannot be sent now (the transport is paused): written as queued rows.
    private func park(_ rows: [DeliverySender.Row], reason: String, sender: DeliverySender, in group: inout DiscardingTaskGroup) {
        for row in rows {
            held.add(.handed, row.id)
            group.addTask { self.done(row, recorded: await sender.park(row, reason: reason, on: self.db)) }
        }
    }

    /// Runs one claimed job; failures retry with backoff until max attempts, then the job is dead.
    private func runJob(_ id: Int64) async {
        do {
            guard let job = try await Job.find(id, on: db), job.lockedBy == self.id else { return }
            do {
                guard let handler = handlers[job.kind] else { throw WorkerError.unknownKind(job.kind.rawValue) }
                let result = try await handler(job, db)
                let now = clock.now()
                switch result {
                case .done: try await jobLease.finish(id, status: .done, note: ("last_error", nil), now: now, on: sql)
                case .skipped(let why): try await jobLease.finish(id, status: .skipped, note: ("last_error", why), now: now, on: sql)
                case .requeue(let why):
                    try await jobLease.finish(id, status: .queued, note: ("last_error", why), retryAt: now, uncountAttempt: true, now: now, on: sql)
                }
            } catch {
                let dead = job.attempts >= job.maxAttempts
                logger.warning("job failed", metadata: ["job": "\(job.key)", "attempt": "\(job.attempts)", "dead": "\(dead)"])
                let now = clock.now()
                try await jobLease.finish(id, status: dead ? .dead : .queued, note: ("last_error", String(describing: error)),
                                          retryAt: now.addingTimeInterval(jobRetry.delay(afterAttempt: job.attempts)), now: now, on: sql)
            }
        } catch {
            logger.error("job bookkeeping failed", metadata: ["job": "\(id)"])
        }
    }

    /// Keeps leases alive while work is in progress (a lease is at most `leaseSeconds`).
    private func renewLeases() async {
        let interval = Duration.seconds(max(1, settings.leaseSeconds / 3))
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            let now = clock.now()
            try? await jobLease.renew(held.ids(.jobs), now: now, on: sql)
            try? await deliveryLease.renew(held.ids(.deliveries), now: now, on: sql)
        }
    }

    /// Until the next due row, but at least every second (other processes enqueue too).
    private func sleepTime() async throws -> Duration {
        if let local, local.count > 0 { return .milliseconds(10) }
        var next = try await jobLease.nextDue(on: sql)
        if let sender, sender.transport.pausedReason == nil, inFlight < settings.maxInFlight,
           let d = try await deliveryLease.nextDue(on: sql) {
            next = min(next ?? d, d)
        }
        guard let next else { return .seconds(1) }
        let wait = next.timeIntervalSince(clock.now())
        return .milliseconds(Int64(min(1, max(0.01, wait)) * 1000))
    }

    /// Processes everything due now, then returns (tests, one-shot commands). A pass claims what is
    /// due and waits for it to finish; a fan-out finishes only once the emails it handed over are
    /// sent, so while it runs the pass keeps starting them.
    func drain(maxPasses: Int = 1000) async throws {
        var failure: (any Error)?
        await withDiscardingTaskGroup { group in
            // A fan-out runs as long as its emails take: its lease is kept, as in `run()`.
            group.addTask { await self.renewLeases() }
            defer { group.cancelAll() }
            var passes = 0
            while passes < maxPasses {
                do { try await claimAndStart(in: &group) } catch { logger.error("drain pass failed") }
                var handedWaiting: Bool { (local?.count ?? 0) > 0 && !windowNearlyFull }
                while held.count(.jobs) + inFlight > 0 && !handedWaiting { await wake.wait(timeout: .milliseconds(20)) }
                if handedWaiting { continue }
                passes += 1
                do {
                    let now = clock.now()
                    let jobsDue = try await jobLease.nextDue(on: sql).map { $0 <= now } ?? false
                    let queuedDue = sender == nil ? false : (try await deliveryLease.nextDue(on: sql).map { $0 <= now } ?? false)
                    if !jobsDue && !queuedDue { return }
                } catch {
                    failure = error
                    return
                }
            }
        }
        if let failure { throw failure }
    }

    enum WorkerError: Error { case unknownKind(String) }
}

/// Rows this process holds leases on, for renewal and in-flight limits.
final class HeldRows: @unchecked Sendable {
    /// `handed`: emails of the local queue being sent (no row, no lease yet).
    enum Kind { case jobs, deliveries, handed }
    private let lock = NSLock()
    private var rows: [Kind: Set<Int64>] = [.jobs: [], .deliveries: [], .handed: []]

    func add(_ k: Kind, _ id: Int64) { lock.withLock { _ = rows[k]!.insert(id) } }
    func remove(_ k: Kind, _ id: Int64) { lock.withLock { _ = rows[k]!.remove(id) } }
    func count(_ k: Kind) -> Int { lock.withLock { rows[k]!.count } }
    func ids(_ k: Kind) -> [Int64] { lock.withLock { Array(rows[k]!) } }
}
