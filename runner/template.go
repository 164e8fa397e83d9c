package runner

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// settleCap bounds, in settle windows, how long a file written without
// pause defers its re-read.
const settleCap = 25

// tmplState is one running template.
type tmplState struct {
	// Set by start, then only read.
	conf     config.Template
	keys     []string          // of the sources it reads, in order
	sources  map[string]Source // by key
	triggers Triggers
	deb      *watcher.Debouncer // data changes and parsed edits → render requests
	settle   *watcher.Debouncer // file events → a re-read once the writes went quiet
	cancel   context.CancelFunc
	done     chan struct{}

	// Guarded by mu: the template's watch goroutine writes them (first
	// sync, re-parse of an edit); Run's goroutine reads them.
	mu       sync.Mutex
	synced   bool
	tmpl     *dialect.Template // nil until the file parses
	tmplGen  int               // bumped when the template is re-parsed
	parseErr error             // why the file on disk does not parse; nil when it does
	ticked   bool              // an interval tick is due (Triggers.Every)

	// Owned by Run's goroutine; no lock.
	applied      bool     // the snapshot (appliedData) and template (appliedGen) below were rendered successfully
	appliedData  []uint64 // mirror generations of the last successful render
	appliedRev   store.Revision
	appliedGen   int
	good         []store.KV // what the last successful render rendered (quarantined keys reverted); nil before it
	quarantine   quarantine // keys left out because they fail the check
	quarGen      int        // the template generation the quarantine was found with
	lastRender   time.Time
	lastChange   time.Time
	failingSince time.Time // first failed attempt since the last success; zero while it applies
	lastErr      error
	renders      int
	failures     int
	retry        time.Duration
	retryTimer   *time.Timer
	warned       map[string]bool // what the last render reported with {{warn}}
	live         *live           // live endpoints (live.go); nil without
	binder       Binder          // how its output is made, when its source says (dedup); nil: render.Bind
	pace         pace            // reload pacing (pace.go)
}

// files are the files the template reads: those the parsed template
// names, else (it did not parse) its configured source and includes.
func (t *tmplState) files() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tmpl != nil {
		return t.tmpl.Files()
	}
	return append([]string{t.conf.Src}, t.conf.Options.Includes...)
}

// parsed reports whether the template has a parsed version.
func (t *tmplState) parsed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tmpl != nil
}

func (t *tmplState) stop() {
	t.cancel()
	<-t.done
	if t.retryTimer != nil {
		t.retryTimer.Stop()
	}
	t.pace.stop()
}

// watchTemplate is one template's goroutine: it waits for the first sync of
// every source, asks for the first render at once, then turns data changes,
// file changes and ticks into render requests. A notification whose data
// (the sources' generations) is what the template already saw is dropped
// before it reaches the quiet window: an event that changes nothing the
// template reads does not delay its render.
func (s *state) watchTemplate(ctx context.Context, t *tmplState) {
	defer close(t.done)
	log := s.r.log.With("template", t.conf.Name)
	var wg sync.WaitGroup
	defer wg.Wait()
	// Every source's notifications, coalesced into one channel.
	changed := make(chan struct{}, 1)
	for _, src := range t.sources {
		ch, cancel := src.Subscribe()
		defer cancel()
		wg.Go(func() {
			for {
				select {
				case <-ch:
					select {
					case changed <- struct{}{}:
					default: // one is pending; it covers this one
					}
				case <-ctx.Done():
					return
				}
			}
		})
	}
	var tick <-chan time.Time
	if t.triggers.Every > 0 {
		tk := time.NewTicker(t.triggers.Every)
		defer tk.Stop()
		tick = tk.C
	}
	var (
		fileCh      <-chan struct{}
		cancelFiles = func() {}
		watched     []string
	)
	watchFiles := func() {
		files := t.files()
		if slices.Equal(files, watched) {
			return
		}
		ch, cancel, err := s.files.Watch(files)
		if err != nil {
			log.Warn("template files are not watched for changes", "err", err)
			return
		}
		cancelFiles()
		fileCh, cancelFiles, watched = ch, cancel, files
	}
	watchFiles()
	defer func() { cancelFiles() }()
	for _, src := range t.sources {
		select {
		case <-src.Synced():
		case <-ctx.Done():
			return
		}
	}
	seen := generations(t.keys, t.sources) // the data of the first render, or older
	t.mu.Lock()
	t.synced = true
	t.mu.Unlock()
	if !s.send(ctx, t) { // the first render waits for no quiescence
		return
	}
	for {
		select {
		case <-changed:
			// Compare before arming the quiet window, not after it.
			if gens := generations(t.keys, t.sources); !slices.Equal(gens, seen) {
				seen = gens
				if !t.triggers.IgnoreData {
					t.deb.Trigger()
				}
			}
		case <-tick:
			t.mu.Lock()
			t.ticked = true
			t.mu.Unlock()
			if !s.send(ctx, t) {
				return
			}
		case <-t.deb.C():
			if !s.send(ctx, t) {
				return
			}
		case <-fileCh:
			t.settle.Trigger() // re-read once the writes have gone quiet
		case <-t.settle.C():
			ok := s.reparse(t, log, "changed on disk")
			watchFiles() // an edit may have added or dropped an include
			if ok {
				t.deb.Trigger()
			}
		case <-ctx.Done():
			return
		}
	}
}

// reparse re-reads a changed template and reports whether the new version
// parsed and replaced the previous one. A broken edit keeps the previous
// version and is reported with file:line (the parse error names them).
func (s *state) reparse(t *tmplState, log *slog.Logger, why string) bool {
	nt, err := dialect.Parse(t.conf.Src, t.conf.Options)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if t.tmpl == nil {
			t.parseErr = fmt.Errorf("%s: %w", t.conf.Origin, err)
			log.Error("template still does not parse", "err", err)
			return false
		}
		t.parseErr = fmt.Errorf("%s: %w (keeping the previous version)", t.conf.Origin, err)
		log.Error("template edit does not parse; keeping its previous version", "err", err)
		return false
	}
	t.tmpl, t.parseErr = nt, nil
	t.tmplGen++
	log.Info("template re-read; re-rendering", "why", why)
	return true
}

func (s *state) send(ctx context.Context, t *tmplState) bool {
	select {
	case s.due <- t:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *state) scheduleRetry(t *tmplState, delay time.Duration) {
	if t.retryTimer != nil {
		t.retryTimer.Stop()
	}
	t.retryTimer = time.AfterFunc(delay, func() { t.deb.Trigger() })
}
