# One image for the Spillway services (ingest, search, archiver) and healthcheck: static Go builds
# on a distroless, non-root base. docker-compose.yml picks the binary per service.
#
#   docker build -t spillway .
#   docker run --rm spillway /usr/local/bin/archiver status

# The build stage follows go.mod's `go` line; GOTOOLCHAIN=auto fetches a newer patch if needed.
FROM golang:1.26 AS build
WORKDIR /src
# Static binaries: no libc in the final image, and none needed.
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Dependencies first, so a source change does not download modules again.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
RUN go build -ldflags="-s -w" -o /out/ ./cmd/ingest ./cmd/search ./cmd/archiver ./cmd/healthcheck

# distroless/static: CA certificates, tzdata, /etc/passwd with `nonroot` (65532); no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080 8081 8082
CMD ["/usr/local/bin/ingest"]
