# my-app, the walkthrough's example application, as a small container image:
# a static binary on an empty base, run as a non-root user.
#
#   docker build -t weir/my-app:0.1.0 .
#
# Stage 1 builds a statically linked, stripped binary (about 3 MiB) with
# deploy/build-my-app-static, which `.ci/run` also runs and checks (static,
# answers when run as uid 65532 with an empty environment).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN deploy/build-my-app-static /my-app

# Stage 2: nothing but the binary.
FROM scratch
COPY --from=build /my-app /my-app
USER 65532:65532
EXPOSE 8080 8086 9101
ENTRYPOINT ["/my-app"]
