import Fluent
import SQLKit

/// Allocates Agora uids: random in 1…UInt32.max (never derived from the user id), distinct within
/// a batch and from every stored uid. The unique index on users.agora_uid is the final guard;
/// callers retry their transaction when a concurrent writer wins a clash.
struct UidAllocator: Sendable {
    let random: @Sendable () -> UInt32

    func allocate(count: Int, on db: any Database) async throws -> [Int64] {
        guard count > 0 else { return [] }
        var chosen = Set<Int64>()
        var result: [Int64] = []
        result.reserveCapacity(count)
        var pending = count
        var rounds = 0
        while pending > 0 {
            rounds += 1
            if rounds > 50 { throw APIError(.serviceUnavailable, "uid_allocation_failed", "Could not allocate Agora uids; try again") }
            var candidates: [Int64] = []
            while candidates.count < pending {
                let uid = Int64(random())
                if uid != 0, chosen.insert(uid).inserted { candidates.append(uid) }
            }
            let taken = try await Self.existing(candidates, on: db)
            for uid in candidates where !taken.contains(uid) { result.append(uid) }
            pending = count - result.count
        }
        return result
    }

    private static func existing(_ uids: [Int64], on db: any Database) async throws -> Set<Int64> {
        let sql = db.sql
        var taken = Set<Int64>()
        for chunk in uids.chunks(of: 500) {
            struct Row: Decodable { let agora_uid: Int64 }
            let rows = try await sql.select().column("agora_uid").from("users")
                .where("agora_uid", .in, Array(chunk)).all(decoding: Row.self)
            taken.formUnion(rows.map(\.agora_uid))
        }
        return taken
    }
}

extension Array {
    func chunks(of size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
