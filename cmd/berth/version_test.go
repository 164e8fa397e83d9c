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
	// Go stamps the VCS only where it can read the checkout (a plain
	// clone, as CI's; not every git worktree): check what it stamped.
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	stamped := strings.Contains(string(info), "vcs.revision=")
	v, flag := out("version"), out("--version")
	if v != flag {
		t.Errorf("berth version = %q, berth --version = %q: want the same line", v, flag)
	}
	if !stamped {
		if !strings.HasPrefix(v, "berth devel (") {
			t.Errorf("berth version = %q: without VCS stamping, want the devel fallback", v)
		}
		t.Logf("this checkout is not VCS-stamped by go build (%s): only the fallback is checked", strings.TrimSpace(string(head)))
		return
	}
	if want := "revision " + strings.TrimSpace(string(head))[:12]; !strings.Contains(v, want) {
		t.Errorf("berth version = %q, want it to contain %q", v, want)
	}
	if strings.Contains(v, "devel") {
		t.Errorf("berth version = %q: a build from a git checkout has a module version, not devel", v)
	}
}
