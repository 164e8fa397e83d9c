package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionFromBuildInfo: `berth version` and `berth --version` print the
// same line, naming the VCS revision the binary was built from.
func TestVersionFromBuildInfo(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD (the test builds berth from this checkout): %v", err)
	}
	// Built here rather than with berthBinary: the version needs VCS
	// stamping, which a GOFLAGS=-buildvcs=false environment turns off
	// unless the build asks for it, as the Makefile does.
	bin := filepath.Join(t.TempDir(), "berth")
	build := exec.Command("go", "build", "-tags", "seccomp", "-buildvcs=auto", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out := func(args ...string) string {
		t.Helper()
		b, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	v, flag := out("version"), out("--version")
	if v != flag {
		t.Errorf("berth version = %q, berth --version = %q: want the same line", v, flag)
	}
	if want := "revision " + strings.TrimSpace(string(head))[:12]; !strings.Contains(v, want) {
		t.Errorf("berth version = %q, want it to contain %q", v, want)
	}
	if strings.Contains(v, "devel") {
		t.Errorf("berth version = %q: a build from a git checkout has a module version, not devel", v)
	}
}
