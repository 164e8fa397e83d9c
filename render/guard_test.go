package render

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmptyGuard: an empty or white-space only output never replaces a
// destination that holds something, unless the Spec allows empty output;
// a destination that is empty or missing takes it.
func TestEmptyGuard(t *testing.T) {
	for _, tc := range []struct {
		name       string
		before     *string // nil: no destination
		out        string
		allowEmpty bool
		refused    bool
	}{
		{"empty over content", ptr("server a;\n"), "", false, true},
		{"blank over content", ptr("server a;\n"), " \n\t\n", false, true},
		{"empty over content, allowed", ptr("server a;\n"), "", true, false},
		{"empty over empty", ptr(""), "", false, false},
		{"empty as first render", nil, "", false, false},
		{"content over content", ptr("server a;\n"), "server b;\n", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "default.conf")
			if tc.before != nil {
				os.WriteFile(dest, []byte(*tc.before), 0o644)
			}
			// A fresh renderer each time: the guard reads the destination,
			// so it holds on the first render after a restart.
			_, err := cycle(t, testRenderer(t), Job{Spec: Spec{Dest: dest, AllowEmpty: tc.allowEmpty}, Source: static(tc.out)})
			if got := errors.Is(err, ErrRefused); got != tc.refused {
				t.Fatalf("refused = %v, want %v (err %v)", got, tc.refused, err)
			}
			got, _ := os.ReadFile(dest)
			want := tc.out
			if tc.refused {
				want = *tc.before
			}
			if string(got) != want {
				t.Fatalf("dest = %q, want %q", got, want)
			}
			noTemps(t, dir)
		})
	}
}

func ptr(s string) *string { return &s }

// TestMaxShrinkAfterRestart: max_shrink compares with the last good render
// of the previous process too (a new Renderer on the same destination), so
// that records lost to an outage do not empty the output on the first
// render after a restart; min_entries holds without any memory.
func TestMaxShrinkAfterRestart(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	job := func(n int) Job {
		return Job{Spec: Spec{Dest: dest, MaxShrink: 0.5, MinEntries: 1}, Source: staticSource{data: []byte(strings.Repeat("x\n", n) + "end\n"), count: n}}
	}
	if _, err := cycle(t, testRenderer(t), job(10)); err != nil {
		t.Fatal(err)
	}
	// "Restart": a new renderer; the records are mostly gone.
	if _, err := cycle(t, testRenderer(t), job(2)); !errors.Is(err, ErrRefused) {
		t.Fatalf("first render after a restart with 2 of 10 records: %v, want refused", err)
	}
	if _, err := cycle(t, testRenderer(t), job(0)); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "min_entries") {
		t.Fatalf("0 records: %v, want refused by min_entries", err)
	}
	if got := strings.Count(readFile(t, dest), "x"); got != 10 {
		t.Fatalf("dest has %d records, want the 10 of the last good render", got)
	}
	// A shrink within the limit applies and becomes the new reference.
	r := testRenderer(t)
	if _, err := cycle(t, r, job(6)); err != nil {
		t.Fatal(err)
	}
	if _, err := cycle(t, testRenderer(t), job(3)); err != nil {
		t.Fatalf("3 of 6 after a restart: %v", err)
	}
	noTemps(t, dir)
}

// TestTry: Try renders and runs the check on a staged copy beside the
// destination, and leaves the destination, the reload command and the
// guards' memory alone, whether the check passes or fails.
func TestTry(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out")
	os.WriteFile(dest, []byte("old\n"), 0o644)
	reloadLog := filepath.Join(dir, "reload.log")
	check := writeScript(t, dir, "check.sh", `case "$1" in `+dir+`/.out.berth-*) ;; *) echo "bad path $1"; exit 1;; esac
! grep -q BAD "$1" || { echo "BAD found"; exit 1; }
`)
	r := testRenderer(t)
	spec := Spec{Dest: dest, Check: check + " {{.src}}", Reload: "echo reload >> " + reloadLog, MaxShrink: 0.1}
	if err := r.Try(context.Background(), Job{Spec: spec, Source: static("new\n")}); err != nil {
		t.Fatalf("passing try: %v", err)
	}
	err := r.Try(context.Background(), Job{Spec: spec, Source: static("BAD\n")})
	var ce *CommandError
	if !errors.As(err, &ce) || ce.What != "check" || !strings.Contains(err.Error(), "BAD found") {
		t.Fatalf("failing try: %v", err)
	}
	if err := r.Try(context.Background(), Job{Spec: spec, Source: failingSource{}}); err == nil || !strings.Contains(err.Error(), "render") {
		t.Fatalf("render error: %v", err)
	}
	if got := readFile(t, dest); got != "old\n" {
		t.Fatalf("dest = %q after tries", got)
	}
	if _, err := os.Stat(reloadLog); !os.IsNotExist(err) {
		t.Fatal("a try ran the reload command")
	}
	if _, ok := r.lastCount(dest); ok {
		t.Fatal("a try was remembered as a good render")
	}
	noTemps(t, dir)
}

type failingSource struct{}

func (failingSource) Render(w io.Writer) error { return errors.New("boom") }
func (failingSource) Count() int               { return 1 }
