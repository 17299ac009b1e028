import Vapor

/// `App dev-token USER_ID` prints a JWT for that user, signed with the configured secret.
struct DevTokenCommand: AsyncCommand {
    struct Signature: CommandSignature {
        @Argument(name: "userId") var userId: String
        @Option(name: "days", help: "Lifetime in days (default and most: JWT_MAX_AGE_SECONDS, 7 days)") var days: Int?
    }

    var help: String { "Print a bearer JWT for USER_ID (development and testing)." }

    func run(using context: CommandContext, signature: Signature) async throws {
        guard context.application.environment != .production else {
            context.console.error("dev-token is disabled in production: tokens come from the host platform.")
            throw ExitCode(1)
        }
        guard Validation.isValidUserID(signature.userId) else {
            context.console.error("Invalid user id"); throw ExitCode(1)
        }
        let maxAge = context.application.deps.config.jwt.maxAgeSeconds
        let lifetime = signature.days.map { min(TimeInterval(max(1, $0)) * 86_400, maxAge) } ?? maxAge
        context.console.print(try await context.application.deps.jwt.sign(userID: signature.userId, expiresIn: lifetime))
    }
}

struct ExitCode: Error { let code: Int32; init(_ code: Int32) { self.code = code } }
