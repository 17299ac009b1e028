# syntax=docker/dockerfile:1
# Live-stream backend: the shape of Vapor's official template Dockerfile (github.com/vapor/template),
# adapted to this package (system zlib for CZlib, Resources/ with the email templates).
#
#   docker build -t livestream-backend .
#   docker run --rm -p 8080:8080 -e JWT_SECRET=… -e AGORA_APP_ID=… -e AGORA_APP_CERTIFICATE=… livestream-backend
#
# Configuration comes only from the environment at run time (see .env.example); nothing secret is
# baked into the image, and .dockerignore keeps local .env files out of the build context.

# ================================
# Build image
# ================================
FROM swift:6.3-noble AS build

# Install OS updates, jemalloc (linked below, as in the template) and the system zlib headers
# that Sources/CZlib links against (Package.swift: pkgConfig "zlib", apt zlib1g-dev).
RUN export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    && apt-get -q update \
    && apt-get -q dist-upgrade -y \
    && apt-get -q install -y \
      libjemalloc-dev \
      zlib1g-dev \
      pkg-config \
    && rm -rf /var/lib/apt/lists/*

# Set up a build area
WORKDIR /build

# First just resolve dependencies.
# This creates a cached layer that can be reused
# as long as your Package.swift/Package.resolved
# files do not change.
# Package.resolved pins every package (versions and revisions). Its revisions are those of the
# package copies the project is developed and tested with; where a copy's commit ids differ from
# upstream's, the pinned revision cannot be checked out from github.com, and the build resolves the
# same Package.swift requirements afresh — saying so loudly in the build log.
COPY ./Package.* ./
RUN swift package resolve --force-resolved-versions \
    || { echo "WARNING: Package.resolved revisions not found upstream; resolving Package.swift requirements afresh" >&2; \
         rm -f Package.resolved && swift package resolve; }

# Copy entire repo into container (minus what .dockerignore excludes)
COPY . .

RUN mkdir /staging

# Build the App product with optimizations, the Swift runtime linked statically, and jemalloc.
# N.B.: the static version of jemalloc is incompatible with the static Swift runtime, so jemalloc
# stays a shared library (libjemalloc2 in the run image).
RUN swift build -c release \
        --product App \
        --static-swift-stdlib \
        -Xlinker -ljemalloc \
    # Copy main executable to staging area
    && cp "$(swift build -c release --show-bin-path)/App" /staging/ \
    # Copy resources bundled by SPM to staging area (none today; kept from the template)
    && find -L "$(swift build -c release --show-bin-path)/" -regex '.*\.resources$' -exec cp -Ra {} /staging/ \;

# Switch to the staging area
WORKDIR /staging

# Copy static swift backtracer binary to staging area
RUN cp "/usr/libexec/swift/linux/swift-backtrace-static" ./

# Copy Resources/ (Templates/ for the emails, openapi.json, docs.html). Vapor resolves it
# against the working directory (app.directory.resourcesDirectory), so it must sit next to ./App in
# the run image's WORKDIR. Required: the build fails here if it is missing. Read-only by default.
RUN cp -R /build/Resources ./Resources && chmod -R a-w ./Resources

# ================================
# Run image
# ================================
FROM ubuntu:noble

# Make sure all system packages are up to date, and install only essential packages:
# jemalloc (linked above), CA roots (SMTP TLS, S3, Agora REST, PostgreSQL TLS), the tz database
# (members' local times in emails), and zlib (CZlib links the system libz.so.1).
# No libcurl4/libxml2: the app imports neither FoundationNetworking nor FoundationXML.
RUN export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
    && apt-get -q update \
    && apt-get -q dist-upgrade -y \
    && apt-get -q install -y \
      libjemalloc2 \
      ca-certificates \
      tzdata \
      zlib1g \
    && rm -r /var/lib/apt/lists/*

# Create a vapor user and group with /app as its home directory
RUN useradd --user-group --create-home --system --skel /dev/null --home-dir /app vapor

# Switch to the new home directory
WORKDIR /app

# Copy built executable and any staged resources from builder
COPY --from=build --chown=vapor:vapor /staging /app

# Nothing secret here. The crash reporter settings come from the template; VAPOR_ENV makes any
# command started without --env (e.g. `./App worker`) run in production rather than development.
ENV SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=all,interactive=no,swift-backtrace=./swift-backtrace-static \
    VAPOR_ENV=production

# Ensure all further commands run as the vapor user
USER vapor:vapor

# Let Docker bind to port 8080
EXPOSE 8080

# Start the Vapor service when the image is run, default to listening on 8080 in production environment.
# Other commands replace CMD: `docker run IMAGE worker --env production` (the background worker alone),
# `docker run IMAGE reminders --env production` (one reminders pass, then exit; for a cron job).
ENTRYPOINT ["./App"]
CMD ["serve", "--env", "production", "--hostname", "0.0.0.0", "--port", "8080"]
