import Crypto
import Fluent
import Mailer
import SQLKit
import Vapor

/// Read endpoints for frontends: a stream's page, what is live, what is coming up for me, and a
/// public iCalendar feed of a creator's schedule.
struct FeedController: RouteCollection {
    let authed: Bool
    let lifecycle: StreamLifecycle
    /// Links and calendar ids in the public feed.
    let mail: AppConfig.MailSettings

    func boot(routes: any RoutesBuilder) throws {
        if authed {
            routes.get("streams", "live", use: live)
            routes.get("streams", ":streamId", use: details)
            routes.get("me", "upcoming", use: upcoming)
        } else {
            // Public on purpose: calendar apps send no bearer token; only public fields inside.
            routes.get("creator", ":creatorId", "schedule.ics", use: scheduleFeed)
        }
    }

    /// Events in the public, unauthenticated calendar feed: the next ones, at most this many
    /// (with byte-limited titles, a feed stays well under 200 KB).
    static let publicFeedLimit = 100

    struct One: Content { var success = true; let stream: StreamDetails }
    struct Many: Content { var success = true; let streams: [StreamDetails]; @NullEncodable var nextCursor: String? }

    @Sendable func details(req: Request) async throws -> One {
        _ = try req.caller
        let stream = try await lifecycle.stream(req.parameters.get("streamId") ?? "", on: req.db)
        let creator = try await stream.$creator.get(on: req.db)
        let rsvps = try await RSVP.counts(stream: stream.id!, capacity: stream.capacity, on: req.db.sql)
        return One(stream: StreamDetails(stream, creator: creator, rsvps: rsvps))
    }

    /// GET /api/streams/live?limit&cursor — most viewers first; the cursor is opaque.
    @Sendable func live(req: Request) async throws -> Many {
        _ = try req.caller
        var limit = 50
        if let raw = req.query[String.self, at: "limit"] {
            guard let n = Int(raw), (1...200).contains(n) else { throw APIError.validation("limit must be 1–200") }
            limit = n
        }
        var query = LiveStream.query(on: req.db).filter(state: .live).with(\.$creator)
        if let cursor = req.query[String.self, at: "cursor"] {
            guard let data = Data(base64Encoded: cursor), let text = String(data: data, encoding: .utf8),
                  let sep = text.firstIndex(of: ":"), let count = Int(text[..<sep]) else { throw APIError.validation("Invalid cursor") }
            let id = String(text[text.index(after: sep)...])
            query = query.group(.or) { or in
                or.filter(\.$viewerCount < count).group(.and) { $0.filter(\.$viewerCount == count).filter(\.$id > id) }
            }
        }
        let page = try await query.sort(\.$viewerCount, .descending).sort(\.$id, .ascending).limit(limit + 1).all()
        let shown = Array(page.prefix(limit))
        let next = page.count > limit ? shown.last.map { Data("\($0.viewerCount):\($0.id!)".utf8).base64EncodedString() } : nil
        return Many(streams: shown.map { StreamDetails($0, creator: $0.creator) }, nextCursor: next)
    }

    /// GET /api/me/upcoming — the next 14 days from creators I follow or subscribe to.
    @Sendable func upcoming(req: Request) async throws -> Many {
        let caller = try req.caller
        guard let me = try await User.find(caller.id, on: req.db) else { throw APIError.notFound("user_not_found", "Unknown user") }
        struct Row: Decodable { let id: String }
        let creators = try await req.db.sql.raw(Audience.creators(followedBy: caller.id)).all(decoding: Row.self).map(\.id)
        guard !creators.isEmpty else { return Many(streams: [], nextCursor: nil) }
        let now = req.now
        let streams = try await LiveStream.query(on: req.db).filter(\.$creator.$id ~~ creators)
            .filter(state: .scheduled)
            .filter(\.$startTime >= now).filter(\.$startTime <= now.addingTimeInterval(14 * 86_400))
            .sort(\.$startTime).limit(500).with(\.$creator).all()
        return Many(streams: streams.map {
            StreamDetails($0, creator: $0.creator, local: TimeFormatting.format($0.startTime, zoneID: me.timezone ?? $0.creator.timezone ?? "UTC"))
        }, nextCursor: nil)
    }

    /// GET /api/creator/:creatorId/schedule.ics — public, cacheable (ETag), RFC 5545.
    @Sendable func scheduleFeed(req: Request) async throws -> Response {
        let creatorID = req.parameters.get("creatorId") ?? ""
        guard Validation.isValidUserID(creatorID), let creator = try await User.find(creatorID, on: req.db), creator.role == .creator else {
            throw APIError.notFound("creator_not_found", "Creator not found")
        }
        let now = req.now
        let streams = try await LiveStream.query(on: req.db).filter(\.$creator.$id == creatorID).filter(\.$seriesID == nil)
            .filter(state: .scheduled, .live, .paused).filter(\.$startTime >= now.addingTimeInterval(-86_400))
            .sort(\.$startTime).limit(Self.publicFeedLimit).all()
        let host = URL(string: mail.publicBaseURL)?.host ?? "localhost"
        // DTSTAMP is the stream's last change, so the feed (and its ETag) only changes when the schedule does.
        var events = streams.map { s in
            let url = "\(mail.frontendURL)/live/\(s.id!)"
            return CalendarEvent(uid: "\(s.id!)@\(host)", sequence: s.scheduleRevision, start: s.startTime, end: s.plannedEnd,
                                 summary: s.title, description: [s.workoutType.map { "Workout: \($0)" }, url].compactMap { $0 }.joined(separator: "\n"),
                                 url: url, stamp: s.updatedAt ?? s.createdAt ?? s.startTime)
        }
        events += try await seriesEvents(creator: creatorID, host: host, now: now, on: req.db)
        let body = CalendarEvent.calendar(events, method: .publish, name: "\(creator.name) — live streams",
                                          zoneIfEmpty: (creator.timezone ?? "UTC", now))
        let etag = "\"" + Hex.lower(SHA256.hash(data: Data(body.utf8)).prefix(16)) + "\""
        if req.headers.first(name: .ifNoneMatch) == etag {
            let r = Response(status: .notModified)
            r.headers.replaceOrAdd(name: .eTag, value: etag)
            return r
        }
        let r = Response(status: .ok, body: .init(string: body))
        r.headers.replaceOrAdd(name: .contentType, value: "text/calendar; charset=utf-8")
        r.headers.replaceOrAdd(name: .eTag, value: etag)
        r.headers.replaceOrAdd(name: .cacheControl, value: "public, max-age=300")
        return r
    }

    /// Series in the feed: one VEVENT each (RRULE, EXDATE), plus a RECURRENCE-ID override for each
    /// upcoming occurrence that differs from its rule (moved or retitled). Series still going, or
    /// whose last class was within 30 days; at most `publicFeedLimit` series and as many overrides.
    private func seriesEvents(creator: String, host: String, now: Date, on db: any Database) async throws -> [CalendarEvent] {
        let all = try await ClassSeries.query(on: db).filter(\.$creator.$id == creator).sort(\.$createdAt).sort(\.$id)
            .limit(Self.publicFeedLimit * 5).all()
        let shown = all.filter { s in
            let rule = s.rule
            guard let first = rule.firstDate else { return false }
            guard let last = rule.lastDate else { return true }
            return last >= first && rule.instant(on: last) >= now.addingTimeInterval(-30 * 86_400)
        }.suffix(Self.publicFeedLimit)
        guard !shown.isEmpty else { return [] }
        let byID = Dictionary(uniqueKeysWithValues: shown.map { ($0.id!, $0) })
        let occurrences = try await LiveStream.query(on: db).filter(\.$seriesID ~~ Array(byID.keys))
            .filter(state: .scheduled, .live, .paused).filter(\.$startTime >= now.addingTimeInterval(-86_400))
            .sort(\.$startTime).limit(Self.publicFeedLimit * 10).all()
        var events: [CalendarEvent] = []
        for s in shown {
            let url = "\(mail.frontendURL)/series/\(s.id!)"
            let description = [s.workoutType.map { "Workout: \($0)" }, url].compactMap { $0 }.joined(separator: "\n")
            events.append(SeriesCalendar.event(.init(s), uid: SeriesCalendar.uid(s.id!, host: host), summary: s.title, description: description,
                                               url: url, stamp: s.updatedAt ?? s.createdAt ?? now))
        }
        var overrides = 0
        for o in occurrences {
            guard overrides < Self.publicFeedLimit, let s = o.seriesID.flatMap({ byID[$0] }), let date = o.occurrenceDate.flatMap(LocalDate.init) else { continue }
            let rule = s.rule
            let due = rule.instant(on: date)
            guard o.startTime != due || o.title != s.title || o.details != s.details else { continue }
            let url = "\(mail.frontendURL)/live/\(o.id!)"
            var event = CalendarEvent(uid: SeriesCalendar.uid(s.id!, host: host), sequence: s.revision + o.scheduleRevision, start: o.startTime,
                                      end: o.plannedEnd, summary: o.title,
                                      description: [o.workoutType.map { "Workout: \($0)" }, url].compactMap { $0 }.joined(separator: "\n"),
                                      url: url, stamp: o.updatedAt ?? o.createdAt ?? now)
            event.tzid = rule.zoneID
            event.recurrenceID = due
            events.append(event)
            overrides += 1
        }
        return events
    }
}
