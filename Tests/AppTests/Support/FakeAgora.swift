import Foundation
import Vapor

/// A local stand-in for Agora's Cloud Recording REST API, written from the documented contract
/// (agora.md §6): Basic auth, request JSON checked field by field, documented responses and errors.
final class FakeAgora: @unchecked Sendable {
    let app: Application
    let port: Int
    let customerID = "fake-customer-id", customerSecret = "fake-customer-secret"
    private let lock = NSLock()
    private var resources: [String: (cname: String, uid: String)] = [:]
    private var running: [String: (cname: String, uid: String)] = [:] // sid → task
    private(set) var starts: [[String: Any]] = []
    private(set) var problems: [String] = []
    /// When set, stop answers 206 + code 435 ("no recorded data").
    var nobodyPublished = false
    /// Kicking rules (agora.md §7): id → body; and how many next calls fail with a 500.
    private(set) var rules: [Int: [String: Any]] = [:]
    private(set) var deletedRules: [Int] = []
    var failNextKickCalls = 0
    private var nextRuleID = 1950

    init() async throws {
        app = try await Application.make(.testing)
        app.logger.logLevel = .critical
        app.http.server.configuration.hostname = "127.0.0.1"
        app.http.server.configuration.port = 0
        port = 0
        try register()
        try await app.server.start(address: .hostname("127.0.0.1", port: 0))
        actualPort = app.http.server.shared.localAddress?.port ?? 0
    }
    private(set) var actualPort = 0
    var baseURL: String { "http://127.0.0.1:\(actualPort)" }

    func shutdown() async {
        await app.server.shutdown()
        try? await app.asyncShutdown()
    }

    private func note(_ problem: String) { lock.withLock { problems.append(problem) } }

    private func json(_ status: HTTPResponseStatus, _ body: [String: Any]) -> Response {
        let r = Response(status: status, body: .init(data: try! JSONSerialization.data(withJSONObject: body)))
        r.headers.contentType = .json
        return r
    }

    private func authorized(_ req: Request) -> Bool {
        req.headers.basicAuthorization.map { $0.username == customerID && $0.password == customerSecret } ?? false
    }

    private func body(_ req: Request) -> [String: Any]? {
        guard req.headers.contentType == .json, let buffer = req.body.data else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any]
    }

    private static func validUID(_ v: Any?) -> String? {
        guard let s = v as? String, let n = UInt32(s), n != 0 else { return nil }
        return s
    }

    private func register() throws {
        app.post("dev", "v1", "kicking-rule") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            if lock.withLock({ let f = failNextKickCalls > 0; if f { failNextKickCalls -= 1 }; return f }) {
                return json(.internalServerError, ["message": "internal error"])
            }
            let allowed: Set<String> = ["join_channel", "publish_audio", "publish_video"]
            guard let b = body(req), b["appid"] is String, b["cname"] is String, let uid = b["uid"] as? Int, uid != 0,
                  let privileges = b["privileges"] as? [String], !privileges.isEmpty, Set(privileges).isSubset(of: allowed) else {
                note("bad kicking-rule body"); return json(.badRequest, ["message": "invalid parameter"])
            }
            if let t = b["time_in_seconds"] as? Int, !(10...86_430).contains(t) { note("time_in_seconds out of range") }
            let id: Int = lock.withLock { nextRuleID += 1; rules[nextRuleID] = b; return nextRuleID }
            return json(.ok, ["status": "success", "id": id])
        }
        app.delete("dev", "v1", "kicking-rule") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            guard let b = body(req), b["appid"] is String, let id = b["id"] as? Int else { return json(.badRequest, ["message": "invalid parameter"]) }
            let known = lock.withLock { rules.removeValue(forKey: id) != nil }
            guard known else { return json(.notFound, ["message": "rule not found"]) }
            lock.withLock { deletedRules.append(id) }
            return json(.ok, ["status": "success", "id": id])
        }
        let base = app.grouped("v1", "apps", ":appid", "cloud_recording")
        base.post("acquire") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            guard let b = body(req), let cname = b["cname"] as? String, let uid = Self.validUID(b["uid"]),
                  let cr = b["clientRequest"] as? [String: Any], cr["scene"] as? Int == 0, (1...720).contains(cr["resourceExpiredHour"] as? Int ?? 0) else {
                note("bad acquire body"); return json(.badRequest, ["code": 2, "reason": "invalid parameter"])
            }
            let id = "res-" + UUID().uuidString
            lock.withLock { resources[id] = (cname, uid) }
            return json(.ok, ["cname": cname, "uid": uid, "resourceId": id])
        }
        base.post("resourceid", ":rid", "mode", ":mode", "start") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            let rid = req.parameters.get("rid")!
            guard let b = body(req), let acquired = lock.withLock({ resources[rid] }), b["cname"] as? String == acquired.cname,
                  b["uid"] as? String == acquired.uid, req.parameters.get("mode") == "mix",
                  let cr = b["clientRequest"] as? [String: Any], (cr["token"] as? String)?.hasPrefix("007") == true,
                  let rc = cr["recordingConfig"] as? [String: Any], rc["channelType"] as? Int == 1,
                  let sc = cr["storageConfig"] as? [String: Any], sc["vendor"] as? Int == 1, sc["region"] is Int,
                  sc["bucket"] is String, sc["accessKey"] is String, sc["secretKey"] is String,
                  let prefix = sc["fileNamePrefix"] as? [String], prefix.allSatisfy({ $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }),
                  prefix.joined(separator: "/").count <= 128 else {
                note("bad start body"); return json(.badRequest, ["code": 2, "reason": "invalid parameter"])
            }
            let conflict = lock.withLock { running.values.contains { $0.cname == acquired.cname } }
            if conflict { return json(.badRequest, ["code": 53, "reason": "task conflict"]) }
            let sid = "sid" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16)
            lock.withLock { running[String(sid)] = acquired; starts.append(b); resources[rid] = nil }
            return json(.ok, ["cname": acquired.cname, "uid": acquired.uid, "resourceId": rid, "sid": String(sid)])
        }
        base.get("resourceid", ":rid", "sid", ":sid", "mode", ":mode", "query") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            let sid = req.parameters.get("sid")!
            guard let task = lock.withLock({ running[sid] }) else { return json(.notFound, ["code": 404, "reason": "failed to find worker"]) }
            return json(.ok, ["cname": task.cname, "uid": task.uid, "resourceId": req.parameters.get("rid")!, "sid": sid,
                              "serverResponse": ["status": 5, "fileListMode": "string", "fileList": "\(sid)_\(task.cname).m3u8"]])
        }
        base.post("resourceid", ":rid", "sid", ":sid", "mode", ":mode", "stop") { [self] req -> Response in
            guard authorized(req) else { return json(.unauthorized, ["message": "Invalid authentication credentials"]) }
            let sid = req.parameters.get("sid")!
            guard let b = body(req), let task = lock.withLock({ running[sid] }) else {
                return json(.notFound, ["code": 404, "reason": "failed to find worker"])
            }
            guard b["cname"] as? String == task.cname, b["uid"] as? String == task.uid, b["clientRequest"] is [String: Any] else {
                note("bad stop body"); return json(.badRequest, ["code": 2, "reason": "invalid parameter"])
            }
            lock.withLock { running[sid] = nil }
            if nobodyPublished { return json(HTTPResponseStatus(statusCode: 206), ["code": 435, "reason": "no recorded data"]) }
            let files: [[String: Any]] = [
                ["fileName": "\(sid)_\(task.cname).m3u8", "trackType": "audio_and_video", "uid": "0", "mixedAllUser": true, "isPlayable": true, "sliceStartTime": 0],
                ["fileName": "\(sid)_\(task.cname)_0.mp4", "trackType": "audio_and_video", "uid": "0", "mixedAllUser": true, "isPlayable": true, "sliceStartTime": 0],
            ]
            return json(.ok, ["resourceId": req.parameters.get("rid")!, "sid": sid, "cname": task.cname, "uid": task.uid,
                              "serverResponse": ["fileListMode": "json", "fileList": files, "uploadingStatus": "uploaded"]])
        }
    }
}
