package runner_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store/memstore"
)

// events reads a log of "WHAT UNIXTIME" lines a scripted command wrote.
func events(t *testing.T, path string) (whats []string, at []float64) {
	t.Helper()
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		whats, at = append(whats, f[0]), append(at, v)
	}
	return whats, at
}

// TestUnitReloadPacing: changes written every 30 ms for 2.5 s to a
// template whose reload takes 0.3 s give reloads that never overlap and
// that start, each, at least twice the previous one's measured cost
// after it ended (lower bounds only); the observations carry the cost
// and the pacing delay; the last value is applied in the end.
func TestUnitReloadPacing(t *testing.T) {
	st := memstore.New()
	dir := t.TempDir()
	logf := filepath.Join(dir, "reloads.log")
	tmpl := kvTemplate(t, dir, "app", "/app/", `port {{ key "/app/port" }}`+"\n")
	tmpl.Spec.Reload = fmt.Sprintf(`echo start $(date +%%s.%%N) >> %[1]s; sleep 0.3; echo end $(date +%%s.%%N) >> %[1]s`, logf)
	var (
		mu  sync.Mutex
		obs []runner.Observation
	)
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()),
		runner.WithObserver(func(o runner.Observation) { mu.Lock(); obs = append(obs, o); mu.Unlock() }))
	st.Put(t.Context(), "/app/port", []byte("0"))
	startRunnerWith(t, r, tmpl)
	waitFile(t, tmpl.Spec.Dest, "port 0\n")
	last := 0
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		last++
		st.Put(t.Context(), "/app/port", []byte(strconv.Itoa(last)))
		time.Sleep(30 * time.Millisecond)
	}
	waitFile(t, tmpl.Spec.Dest, fmt.Sprintf("port %d\n", last))
	// The reload of the last value may still be running.
	deadline := time.Now().Add(20 * time.Second)
	for {
		whats, _ := events(t, logf)
		if len(whats) > 0 && whats[len(whats)-1] == "end" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	whats, at := events(t, logf)
	if len(whats) < 6 {
		t.Fatalf("%d reload events, want at least 3 reloads: %v", len(whats), whats)
	}
	const cost = 0.3
	for i := 0; i+1 < len(whats); i += 2 {
		if whats[i] != "start" || whats[i+1] != "end" {
			t.Fatalf("reloads overlap: events %v", whats)
		}
		if i >= 2 {
			// pacing is 2 × the measured cost (≥ 0.3 s), from after the end.
			if gap := at[i] - at[i-1]; gap < 2*cost-0.02 {
				t.Errorf("reload %d started %.3fs after the previous one ended, want ≥ %.1fs", i/2, gap, 2*cost)
			}
		}
	}
	if n := len(whats) / 2; n > last/2 {
		t.Errorf("%d reloads for %d changes: pacing coalesced nothing", n, last)
	}
	mu.Lock()
	defer mu.Unlock()
	var reloaded, paced int
	for _, o := range obs {
		if o.Result.Reloaded {
			reloaded++
			if o.Result.Cost < 300*time.Millisecond {
				t.Errorf("a reload's measured cost is %v, want ≥ 300ms (the reload sleeps 0.3 s)", o.Result.Cost)
			}
		}
		if o.Paced > 0 {
			paced++
		}
	}
	if reloaded < 3 || paced == 0 {
		t.Errorf("observations: %d reloaded, %d paced; want ≥ 3 and > 0", reloaded, paced)
	}
}

// TestUnitGenerationCheck: with a generation_check, a reload waits for
// the previous generation (a background process the reload starts, which
// lives 1 s) to exit: every reload starts after the previous generation's
// exit, and the wait is reported.
func TestUnitGenerationCheck(t *testing.T) {
	st := memstore.New()
	dir := t.TempDir()
	logf, gone := filepath.Join(dir, "reloads.log"), filepath.Join(dir, "gone")
	tmpl := kvTemplate(t, dir, "app", "/app/", `port {{ key "/app/port" }}`+"\n")
	tmpl.Spec.Reload = fmt.Sprintf(`echo start $(date +%%s.%%N) >> %[1]s; rm -f %[2]s; (sleep 1; echo gone $(date +%%s.%%N) >> %[1]s; touch %[2]s) >/dev/null 2>&1 &`, logf, gone)
	tmpl.Spec.GenerationCheck = "test -e " + gone
	var (
		mu     sync.Mutex
		waited time.Duration
	)
	r := runner.New(st, render.New(render.WithLogger(quietLogger())), runner.WithLogger(quietLogger()),
		runner.WithObserver(func(o runner.Observation) { mu.Lock(); waited = max(waited, o.Result.GenerationWait); mu.Unlock() }))
	os.WriteFile(gone, nil, 0o644) // no previous generation at the start
	st.Put(t.Context(), "/app/port", []byte("0"))
	startRunnerWith(t, r, tmpl)
	waitFile(t, tmpl.Spec.Dest, "port 0\n")
	for i := 1; i <= 3; i++ {
		st.Put(t.Context(), "/app/port", []byte(strconv.Itoa(i)))
		waitFile(t, tmpl.Spec.Dest, fmt.Sprintf("port %d\n", i))
	}
	deadline := time.Now().Add(20 * time.Second)
	var whats []string
	var at []float64
	for {
		if whats, at = events(t, logf); strings.Count(strings.Join(whats, " "), "start") >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var starts int
	lastStart, lastGone := -1.0, -1.0
	for i, w := range whats {
		switch w {
		case "start":
			if starts > 0 && lastGone < lastStart {
				t.Errorf("reload %d started at %.3f, before the generation of the reload at %.3f exited (events %v)", starts, at[i], lastStart, whats)
			}
			starts++
			lastStart = at[i]
		case "gone":
			lastGone = at[i]
		}
	}
	if starts < 4 {
		t.Fatalf("%d reloads, want 4: %v", starts, whats)
	}
	mu.Lock()
	defer mu.Unlock()
	if waited < 500*time.Millisecond {
		t.Errorf("longest generation wait reported %v, want ≥ 500ms", waited)
	}
}
