import FluentKit

/// Issue 22: the viewer count moves by each applied change (+1 / −1) instead of a recount of the
/// whole channel per event. The member row's upsert keeps the role it replaced, so the statement
/// that applies a change also says which change it was. (Superseded by `AddViewerCountTrigger`: the
/// trigger sees the old and new role itself; the column stays, unused, as migrations never change.)
struct AddChannelMemberPreviousRole: AsyncMigration {
    func prepare(on db: any Database) async throws {
        try await db.schema("channel_members").field("prev_role", .string).update()
    }
    func revert(on db: any Database) async throws {
        try await db.schema("channel_members").deleteField("prev_role").update()
    }
}
