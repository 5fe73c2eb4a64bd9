package deploy

import (
	"regexp"
	"strings"
	"testing"
)

// dockerInstruction is one Dockerfile instruction with continuation lines joined.
type dockerInstruction struct {
	Cmd  string // upper-case: FROM, RUN, ...
	Args string
	Line int
}

func parseDockerfile(t *testing.T, b []byte) []dockerInstruction {
	t.Helper()
	var out []dockerInstruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return out
}

var goLineRE = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

// TestDockerfile checks the image recipe: a multi-stage build whose Go stage matches go.mod,
// static binaries (CGO_ENABLED=0) for every command under cmd/, and a final stage that is not
// the Go toolchain and runs as a non-root user. BuildKit's own linter passed on this file (see
// README, "docker compose"); this test keeps the properties that matter to Spillway.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, readFile(t, "Dockerfile"))
	type stage struct {
		base, name string
		ins        []dockerInstruction
	}
	var stages []*stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			s := &stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				t.Fatalf("line %d: %s before the first FROM", in.Line, in.Cmd)
			}
			continue
		}
		stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages; want a build stage and a small final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	gomod := goLineRE.FindSubmatch(readFile(t, "go.mod"))
	if gomod == nil {
		t.Fatal("go.mod has no go line")
	}
	if !strings.HasPrefix(build.base, "golang:"+string(gomod[1])) {
		t.Errorf("build stage FROM %s; want golang:%s (go.mod's go line)", build.base, gomod[1])
	}
	if build.name == "" {
		t.Error("build stage has no name for COPY --from")
	}
	cgoOff, builds := false, false
	for _, in := range build.ins {
		if (in.Cmd == "ENV" || in.Cmd == "RUN" || in.Cmd == "ARG") && strings.Contains(in.Args, "CGO_ENABLED=0") {
			cgoOff = true
		}
		if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
			builds = true
			if !cgoOff {
				t.Errorf("line %d: go build runs before CGO_ENABLED=0 is set", in.Line)
			}
			// The image carries what compose runs (the services and the health check), not
			// the benchmark tooling, which would add its plotting library to every image.
			for _, cmd := range []string{"./cmd/ingest", "./cmd/search", "./cmd/archiver", "./cmd/healthcheck"} {
				if !strings.Contains(in.Args+" ", cmd+" ") {
					t.Errorf("line %d: %q does not build %s", in.Line, in.Args, cmd)
				}
			}
		}
	}
	if !builds {
		t.Error("build stage runs no go build")
	}

	if strings.HasPrefix(final.base, "golang") {
		t.Errorf("final stage FROM %s ships the Go toolchain", final.base)
	}
	if !strings.HasPrefix(final.base, "gcr.io/distroless/static") && final.base != "scratch" {
		t.Errorf("final stage FROM %s; want a static base (distroless/static or scratch) for static binaries", final.base)
	}
	copied, user := false, ""
	for _, in := range final.ins {
		switch in.Cmd {
		case "COPY":
			if strings.Contains(in.Args, "--from="+build.name+" ") && strings.Contains(in.Args, "/usr/local/bin/") {
				copied = true
			}
		case "USER":
			user = in.Args
		case "RUN":
			t.Errorf("line %d: RUN in the final stage (it has no shell)", in.Line)
		}
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s into /usr/local/bin/ (where compose runs the binaries)", build.name)
	}
	u, _, _ := strings.Cut(user, ":")
	if u == "" || u == "root" || u == "0" {
		t.Errorf("final stage USER %q; want a non-root user", user)
	}

	ignore := string(readFile(t, ".dockerignore"))
	if !regexp.MustCompile(`(?m)^\.git$`).MatchString(ignore) {
		t.Error(".dockerignore does not exclude .git")
	}
}
