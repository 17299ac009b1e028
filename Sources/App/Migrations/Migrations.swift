import Fluent
import SQLKit

/// Every migration, in order. New ones are appended, never reordered.
enum Migrations {
    static let all: [any AsyncMigration] = [
        CreateUsers(), CreateFollows(), CreateSubscriptions(), CreateStreams(),
        CreateJobs(), CreateDeliveries(), CreateOutbox(), CreatePreferences(),
        AddStreamSchedule(), CreateModeration(), CreateWebhookState(), AddStreamWentLive(),
        AddReplayVerified(), AddHousekeepingIndexes(), AddEmailEvents(), AddStageControl(),
        AddAttendance(), AddRSVPs(), AddSeries(), AddWebhooks(), AddPush(), SlimDeliveryIndexes(), AddChannelMemberPreviousRole(), AddViewerCountTrigger(),
        AddViewerChangeInbox(), ReservableDeliveryIDs(),
    ]
}

