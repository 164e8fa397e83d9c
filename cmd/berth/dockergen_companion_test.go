package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
)

// TestDockerGenCompanion: berth docker-gen becomes berth-docker-gen (same
// pid, docker-gen's memory) when the companion is installed next to berth,
// and runs docker-gen mode itself when it is not; both render.
func TestDockerGenCompanion(t *testing.T) {
	withCompanion := t.TempDir()
	bin := filepath.Join(withCompanion, "berth")
	data, err := os.ReadFile(berthBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", filepath.Join(withCompanion, dockerGenCompanion), "../berth-docker-gen").CombinedOutput(); err != nil {
		t.Fatalf("go build berth-docker-gen: %v\n%s", err, out)
	}
	tmpl := filepath.Join(t.TempDir(), "t.tmpl")
	if err := os.WriteFile(tmpl, []byte("containers: {{ len . }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bin, wantExe string
	}{
		{"companion next to berth", bin, dockerGenCompanion},
		{"berth alone", berthBinary(t), "berth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command(tc.bin, "docker-gen", "-watch", tmpl, dest)
			var log testenv.SyncBuffer
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			deadline := time.Now().Add(30 * time.Second)
			for {
				if _, err := os.Stat(dest); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never rendered:\n%s", dest, log.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "exe"))
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(exe) != tc.wantExe {
				t.Errorf("pid %d runs %s, want %s", cmd.Process.Pid, exe, tc.wantExe)
			}
		})
	}
}

// TestDockerGenWritesEmptyOutput: as docker-gen, an empty rendering
// replaces the destination (berth's empty-output guard is for its own
// templates; docker-gen has no such guard and no flag to lift one).
func TestDockerGenWritesEmptyOutput(t *testing.T) {
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "empty.tmpl"), filepath.Join(dir, "out")
	if err := os.WriteFile(tmpl, []byte("{{/* no containers match */}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, []byte("upstream old {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := berthCLI(t.Context(), "docker-gen", tmpl, dest); code != 0 {
		t.Fatalf("berth docker-gen: exit %d: %s", code, stderr)
	}
	if b, err := os.ReadFile(dest); err != nil || len(b) != 0 {
		t.Fatalf("dest = %q, %v; want it empty, as docker-gen writes it", b, err)
	}
}
