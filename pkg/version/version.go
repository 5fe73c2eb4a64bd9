// Package version names the build of a Spillway binary, for --version and the logs. It imports
// nothing of Spillway's, so every binary (the services, the CLI, the tools) can use it.
package version

import "runtime/debug"

// Version is set at build time with -ldflags "-X github.com/spillway/spillway/pkg/version.Version=v1.2.3";
// otherwise String reads the build information.
var Version = ""

// String is the version: Version when set, else the module version and VCS revision Go recorded
// ("(devel) 316dbae1a2b3", "-dirty" when built from a modified tree).
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			v += " " + s.Value[:min(len(s.Value), 12)]
		case s.Key == "vcs.modified" && s.Value == "true":
			v += "-dirty"
		}
	}
	return v
}
