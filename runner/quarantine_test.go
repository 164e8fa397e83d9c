package runner

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// bisectEnv is one template whose check, a script, fails when the staged
// output holds the marker BAD, and counts its runs.
type bisectEnv struct {
	s    *state
	t    *tmplState
	tmpl *dialect.Template
	log  string // one line per check run
}

func newBisectEnv(t *testing.T, checkBody string) *bisectEnv {
	t.Helper()
	dir := t.TempDir()
	runs := filepath.Join(dir, "checks.log")
	check := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(check, []byte("#!/bin/sh\necho run >> "+runs+"\n"+checkBody), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl, err := dialect.ParseString("q.tmpl", `{{ range tree "/q/" }}{{ .Key }}={{ .Value }}
{{ end }}`, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r := New(nil, render.New(render.WithLogger(log)), WithLogger(log))
	return &bisectEnv{
		s: &state{r: r, ctx: t.Context()},
		t: &tmplState{conf: config.Template{Name: "q", Spec: render.Spec{
			Name: "q", Dest: filepath.Join(dir, "out"), Check: check + " {{.src}}",
		}}},
		tmpl: tmpl, log: runs,
	}
}

func (e *bisectEnv) runs(t *testing.T) int {
	b, err := os.ReadFile(e.log)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run")
}

// kvs makes n keys /q/k000..., the ones in bad holding the marker.
func kvs(n int, value string, bad ...int) []store.KV {
	out := make([]store.KV, n)
	for i := range out {
		out[i] = store.KV{Key: fmt.Sprintf("/q/k%03d", i), Value: []byte(value)}
		if slices.Contains(bad, i) {
			out[i].Value = []byte("BAD")
		}
	}
	return out
}

// TestQuarantineBisects: a check fails on the staged output when one of
// the changed keys holds a marker. The search over n changed keys finds
// exactly the k culprits in about 2 + k·(log₂ n + 1) check runs (counted
// by the check script itself), and the job is left to render everything
// else. With no culprit (a check that failed once and passes now) nothing
// is quarantined.
func TestQuarantineBisects(t *testing.T) {
	const n = 100
	for _, tc := range []struct {
		name string
		good []store.KV // the last good render's keys
		cur  []store.KV
		bad  []int
	}{
		{"no culprit", nil, kvs(n, "v1"), nil},
		{"one culprit among additions", nil, kvs(n, "v1", 37), []int{37}},
		{"three culprits among modifications", kvs(n, "v1"), kvs(n, "v2", 3, 50, 99), []int{3, 50, 99}},
		{"first and last", kvs(n, "v1"), kvs(n, "v2", 0, n-1), []int{0, n - 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newBisectEnv(t, `! grep -q BAD "$1"`+"\n")
			e.t.good = tc.good
			j := &job{t: e.t, tmpl: e.tmpl, in: dialect.Input{KVs: tc.cur},
				res: render.Result{Err: &render.CommandError{What: "check", Err: errors.New("exit status 1")}}}
			found := e.s.quarantine(j)
			if found != (len(tc.bad) > 0) {
				t.Fatalf("quarantine found culprits: %v, want %v", found, len(tc.bad) > 0)
			}
			var got []string
			for _, q := range e.t.quarantine.list() {
				got = append(got, q.Key)
				if !strings.Contains(q.Reason, "check") || q.Since.IsZero() {
					t.Errorf("quarantined %s without a reason: %+v", q.Key, q)
				}
			}
			var want []string
			for _, i := range tc.bad {
				want = append(want, fmt.Sprintf("/q/k%03d", i))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("quarantined %v, want %v", got, want)
			}
			runs := e.runs(t)
			bound := 2 + len(tc.bad)*(int(math.Ceil(math.Log2(n)))+1)
			t.Logf("%d culprits among %d changes: %d check runs (bound %d)", len(tc.bad), n, runs, bound)
			if runs != j.checks || runs > bound {
				t.Fatalf("%d check runs (job counted %d), want at most %d", runs, j.checks, bound)
			}
			if !found {
				return
			}
			// The job now renders every other change: the culprits are at
			// their last good state (absent, or the old value).
			wantKeys := n // a modified culprit keeps its old value
			if tc.good == nil {
				wantKeys -= len(tc.bad) // an added one is left out
			}
			if len(j.in.KVs) != wantKeys {
				t.Fatalf("job renders %d keys, want %d", len(j.in.KVs), wantKeys)
			}
			for _, kv := range j.in.KVs {
				if string(kv.Value) == "BAD" {
					t.Fatalf("a culprit is still rendered: %s", kv.Key)
				}
			}
			if tc.good != nil && string(j.in.KVs[5].Value) != "v2" {
				t.Fatalf("a good change was reverted: %s=%s", j.in.KVs[5].Key, j.in.KVs[5].Value)
			}
			if d := e.s.r.renderer.Try(t.Context(), render.Job{Spec: e.t.conf.Spec, Source: render.Bind(e.tmpl, j.in)}); d != nil {
				t.Fatalf("what is left fails the check: %v", d)
			}
		})
	}
}

// TestQuarantineNotTheData: when the check fails on the last good data too
// (the fault is the check's environment: a missing binary, a full disk),
// nothing is quarantined, after one check run.
func TestQuarantineNotTheData(t *testing.T) {
	e := newBisectEnv(t, "echo 'nginx: [emerg] open() \"/etc/nginx/mime.types\" failed'; exit 1\n")
	e.t.good = kvs(10, "v1")
	j := &job{t: e.t, tmpl: e.tmpl, in: dialect.Input{KVs: kvs(20, "v2", 4)},
		res: render.Result{Err: &render.CommandError{What: "check", Err: errors.New("exit status 1")}}}
	if e.s.quarantine(j) || len(e.t.quarantine) != 0 {
		t.Fatalf("quarantined %v although the last good data fails too", e.t.quarantine.list())
	}
	if runs := e.runs(t); runs != 1 {
		t.Fatalf("%d check runs, want 1 (the last good data)", runs)
	}
}

// TestSearchCost: the bisection alone, over many changes with a cheap
// try, stays within 2 + k·(log₂ n + 1) runs (the first two are the base
// and full runs quarantine makes before searching).
func TestSearchCost(t *testing.T) {
	const n = 4096
	changes := make([]change, n)
	for i := range changes {
		changes[i] = change{key: fmt.Sprintf("/k%05d", i)}
	}
	for _, bad := range [][]int{{0}, {n - 1}, {7, 8, 9}, {1, 1000, 2000, 3000, 4000}} {
		runs := 0
		try := func(cs []change) error {
			runs++
			for _, c := range cs {
				for _, b := range bad {
					if c.key == changes[b].key {
						return errors.New("fails")
					}
				}
			}
			return nil
		}
		found, _, rest, err := search(changes, errors.New("fails"), try, func() error { return nil })
		if err != nil || len(found) != len(bad) || len(rest) != n-len(bad) || try(rest) != nil {
			t.Fatalf("culprits %v: found %d, rest %d, err %v", bad, len(found), len(rest), err)
		}
		runs-- // the test's own try(rest) above
		if bound := len(bad) * (12 + 1); runs > bound {
			t.Fatalf("culprits %v: %d runs, want at most %d", bad, runs-1, bound)
		}
	}
}

// TestQuarantineRevert: a quarantined key is rendered at its last good
// state (an addition left out, a modification at its old value, a deletion
// kept) while its state stays the quarantined one; it is released as soon
// as that state changes (a new value, a deletion, a re-creation).
func TestQuarantineRevert(t *testing.T) {
	kv := func(k, v string) store.KV { return store.KV{Key: k, Value: []byte(v)} }
	good := []store.KV{kv("/a", "1"), kv("/m", "old"), kv("/z", "gone-later")}
	q := quarantine{
		"/b": {change: change{key: "/b", kv: kv("/b", "bad")}}, // added
		"/m": {change: change{key: "/m", kv: kv("/m", "bad")}}, // modified
		"/z": {change: change{key: "/z", gone: true}},          // deleted
		"/x": {change: change{key: "/x", kv: kv("/x", "bad")}}, // added, then deleted: it just goes
		"/y": {change: change{key: "/y", kv: kv("/y", "bad")}}, // added, then changed: tried again
	}
	log := slog.New(slog.DiscardHandler)
	cur := []store.KV{kv("/a", "1"), kv("/b", "bad"), kv("/m", "bad"), kv("/n", "new"), kv("/y", "fixed")}
	got := q.revert(cur, good, log)
	want := []store.KV{kv("/a", "1"), kv("/m", "old"), kv("/n", "new"), kv("/y", "fixed"), kv("/z", "gone-later")}
	if !slices.EqualFunc(got, want, func(a, b store.KV) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
		t.Fatalf("reverted to %v, want %v", got, want)
	}
	if keys := slices.Sorted(maps.Keys(q)); !slices.Equal(keys, []string{"/b", "/m", "/z"}) {
		t.Fatalf("still quarantined: %v, want /b /m /z", keys)
	}
	if len(cur) != 5 || string(cur[2].Value) != "bad" {
		t.Fatal("revert modified the snapshot")
	}
	// The deleted key comes back, the modified one changes again.
	got = q.revert([]store.KV{kv("/a", "1"), kv("/b", "bad"), kv("/m", "bad2"), kv("/z", "back")}, good, log)
	if len(got) != 3 || string(got[1].Value) != "bad2" || string(got[2].Value) != "back" {
		t.Fatalf("reverted to %v", got)
	}
	if keys := slices.Sorted(maps.Keys(q)); !slices.Equal(keys, []string{"/b"}) {
		t.Fatalf("still quarantined: %v, want /b", keys)
	}
}
