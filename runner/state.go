package runner

import (
	"cmp"
	"context"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/watcher"
)

// Run renders the templates until ctx ends. It returns an error only when
// the set of templates is invalid as configuration (two writing one
// destination) or the file watcher cannot start. A template that does not
// parse is reported (log, Status) and picked up when its file is fixed; a
// check that fails on changed data quarantines the records responsible
// (see the package doc); other render, check and reload errors are
// retried with backoff.
func (r *Runner) Run(ctx context.Context, templates []config.Template) error {
	files, err := watcher.NewFiles(r.log)
	if err != nil {
		return err
	}
	defer files.Close()
	s := &state{
		r: r, files: files,
		mirrors: map[string]*mirrorEntry{},
		tmpls:   map[string]*tmplState{},
		due:     make(chan *tmplState, 64),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer s.wg.Wait()
	defer cancel()
	s.ctx = ctx
	s.wg.Go(func() { files.Run(ctx) })
	if err := s.apply(templates); err != nil {
		return err
	}
	for {
		select {
		case t := <-s.due:
			batch := map[*tmplState]bool{t: true}
			for more := true; more; {
				select {
				case t := <-s.due:
					batch[t] = true
				default:
					more = false
				}
			}
			s.render(batch)
		case u := <-r.updates:
			u.reply <- s.apply(u.templates)
		case reply := <-r.status:
			reply <- s.report()
		case <-ctx.Done():
			for _, t := range s.tmpls {
				t.stop()
			}
			for _, m := range s.mirrors {
				m.cancel()
			}
			return nil
		}
	}
}

// state is Run's state; only Run's goroutine touches it (the per-template
// goroutines only send on due).
type state struct {
	r       *Runner
	ctx     context.Context
	wg      sync.WaitGroup
	files   *watcher.Files
	mirrors map[string]*mirrorEntry
	tmpls   map[string]*tmplState
	due     chan *tmplState
}

type mirrorEntry struct {
	m      *watcher.Mirror
	refs   int
	cancel context.CancelFunc
}

// apply makes the running set match templates.
func (s *state) apply(templates []config.Template) error {
	ts, err := parseEach(templates)
	if err != nil {
		return err
	}
	next := map[string]parsed{}
	for _, t := range ts {
		next[t.conf.Name] = t
		if t.err != nil {
			s.r.log.Error("template does not parse; it renders once its file is fixed", "template", t.conf.Name, "err", t.err)
		}
	}
	var retired []*tmplState
	for name, cur := range s.tmpls {
		if n, ok := next[name]; ok && reflect.DeepEqual(n.conf, cur.conf) && n.err == nil && cur.parsed() {
			delete(next, name) // unchanged: keep it as it is
			continue
		}
		retired = append(retired, cur)
		delete(s.tmpls, name)
	}
	// Start the new templates before releasing the old ones' mirrors, so
	// a prefix both use keeps its mirror (and its sync).
	for _, name := range slices.Sorted(maps.Keys(next)) {
		s.start(next[name])
	}
	for _, cur := range retired {
		cur.stop()
		for p := range cur.mirrors {
			s.releaseMirror(p)
		}
	}
	return nil
}

func (s *state) acquireMirror(prefix string) *watcher.Mirror {
	if e, ok := s.mirrors[prefix]; ok {
		e.refs++
		return e.m
	}
	m := watcher.NewMirror(s.r.st, prefix, append([]watcher.MirrorOption{watcher.WithLogger(s.r.log)}, s.r.mirrorO...)...)
	ctx, cancel := context.WithCancel(s.ctx)
	s.mirrors[prefix] = &mirrorEntry{m: m, refs: 1, cancel: cancel}
	s.wg.Go(func() { m.Run(ctx) })
	return m
}

func (s *state) releaseMirror(prefix string) {
	e := s.mirrors[prefix]
	if e.refs--; e.refs == 0 {
		e.cancel()
		delete(s.mirrors, prefix)
	}
}

// start begins watching one template's prefixes and files.
func (s *state) start(p parsed) {
	ctx, cancel := context.WithCancel(s.ctx)
	wait := p.conf.Wait
	if p.conf.Wait.IsZero() {
		wait = s.r.defWait
	}
	settle := cmp.Or(p.conf.Settle, DefaultSettle)
	t := &tmplState{
		conf: p.conf, tmpl: p.tmpl, parseErr: p.err,
		mirrors: map[string]*watcher.Mirror{},
		deb:     watcher.NewDebouncer(ctx, wait, cmp.Or(p.conf.MinReloadInterval, s.r.minIntvl)),
		// An edit is re-read once its writes went quiet for the settle
		// window; a file rewritten without pause is read at the latest
		// settleCap windows after its first write.
		settle: watcher.NewDebouncer(ctx, watcher.Wait{Min: settle, Max: settleCap * settle}, 0),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	if p.err != nil {
		t.failingSince = time.Now()
	}
	s.startLive(ctx, t)
	for _, pre := range p.conf.Prefixes {
		t.mirrors[pre] = s.acquireMirror(pre)
	}
	s.tmpls[p.conf.Name] = t
	go s.watchTemplate(ctx, t)
}
