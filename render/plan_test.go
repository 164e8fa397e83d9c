package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlan: what a render would change, per destination, with nothing
// written and no command run.
func TestPlan(t *testing.T) {
	dir := t.TempDir()
	same := filepath.Join(dir, "same.conf")
	differs := filepath.Join(dir, "differs.conf")
	mode := filepath.Join(dir, "mode.conf")
	for _, p := range []string{same, differs, mode} {
		if err := os.WriteFile(p, []byte("a\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, "ran")
	cmd := "touch " + marker
	tests := []struct {
		name     string
		job      Job
		changed  bool
		diff     string // contained in the diff; "" means no diff
		wantErr  string
		noChange bool // not in the plan (failed)
	}{
		{"unchanged", Job{Spec: Spec{Dest: same, Check: cmd, Reload: cmd}, Source: static("a\n")}, false, "", "", false},
		{"content", Job{Spec: Spec{Dest: differs, Reload: cmd}, Source: static("b\n")}, true, "-a\n+b\n", "", false},
		{"new file", Job{Spec: Spec{Dest: filepath.Join(dir, "new.conf")}, Source: static("n\n")}, true, "--- /dev/null", "", false},
		{"mode only", Job{Spec: Spec{Dest: mode, Mode: 0o600}, Source: static("a\n")}, true, "", "", false},
		{"refused by a guard", Job{Spec: Spec{Name: "guarded", Dest: filepath.Join(dir, "g.conf"), MinEntries: 5}, Source: static("x\n")}, false, "", "guarded", true},
	}
	var jobs []Job
	for _, tc := range tests {
		jobs = append(jobs, tc.job)
	}
	changes, err := testRenderer(t).Plan(jobs)
	if err == nil || !strings.Contains(err.Error(), "guarded") {
		t.Errorf("Plan error %v, want the guarded job's", err)
	}
	byDest := map[string]Change{}
	for _, c := range changes {
		byDest[c.Dest] = c
	}
	for _, tc := range tests {
		c, ok := byDest[tc.job.Spec.Dest]
		if ok == tc.noChange {
			t.Errorf("%s: in the plan %v, want %v", tc.name, ok, !tc.noChange)
			continue
		}
		if tc.noChange {
			continue
		}
		if c.Changed != tc.changed || (tc.diff == "") != (c.Diff == "") || !strings.Contains(c.Diff, tc.diff) {
			t.Errorf("%s: changed %v diff %q; want changed %v diff containing %q", tc.name, c.Changed, c.Diff, tc.changed, tc.diff)
		}
	}
	if !Pending(changes) || Pending(changes[:1]) {
		t.Errorf("Pending: %v for all, %v for the unchanged one; want true, false", Pending(changes), Pending(changes[:1]))
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("Plan ran a command")
	}
	if got := readFile(t, differs); got != "a\n" {
		t.Errorf("Plan wrote %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.conf")); err == nil {
		t.Error("Plan created a file")
	}
}
