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
		sources: map[string]*sourceEntry{},
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
		case <-r.regenerate:
			s.regenerate()
		case <-ctx.Done():
			for _, t := range s.tmpls {
				t.stop()
			}
			for _, e := range s.sources {
				e.cancel()
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
	sources map[string]*sourceEntry
	tmpls   map[string]*tmplState
	due     chan *tmplState
}

type sourceEntry struct {
	src    Source
	refs   int
	cancel context.CancelFunc
}

// apply makes the running set match templates.
func (s *state) apply(templates []config.Template) error {
	ts, err := parseEach(templates, false)
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
		// The same configuration may read other sources now: a dedup
		// template whose text changed has another identity.
		if n, ok := next[name]; ok && reflect.DeepEqual(n.conf, cur.conf) && n.err == nil && cur.parsed() && slices.Equal(s.r.sourceKeys(n.conf), cur.keys) {
			delete(next, name) // unchanged: keep it as it is
			continue
		}
		retired = append(retired, cur)
		delete(s.tmpls, name)
	}
	// Start the new templates before releasing the old ones' sources, so
	// a source both use keeps running (and its sync).
	for _, name := range slices.Sorted(maps.Keys(next)) {
		s.start(next[name])
	}
	for _, cur := range retired {
		cur.stop()
		for k := range cur.sources {
			s.releaseSource(k)
		}
	}
	return nil
}

func (s *state) acquireSource(key string) Source {
	if e, ok := s.sources[key]; ok {
		e.refs++
		return e.src
	}
	src := s.r.openSource(key)
	ctx, cancel := context.WithCancel(s.ctx)
	s.sources[key] = &sourceEntry{src: src, refs: 1, cancel: cancel}
	s.wg.Go(func() { src.Run(ctx) })
	return src
}

func (s *state) releaseSource(key string) {
	e := s.sources[key]
	if e.refs--; e.refs == 0 {
		e.cancel()
		delete(s.sources, key)
	}
}

// regenerate re-reads every template and renders every synced one now.
func (s *state) regenerate() {
	batch := map[*tmplState]bool{}
	for _, t := range s.tmpls {
		s.reparse(t, s.r.log.With("template", t.conf.Name), "regenerating")
		t.mu.Lock()
		synced := t.synced
		t.mu.Unlock()
		if synced {
			batch[t] = true
		}
	}
	s.render(batch)
}

// start begins watching one template's sources and files.
func (s *state) start(p parsed) {
	ctx, cancel := context.WithCancel(s.ctx)
	wait := p.conf.Wait
	if p.conf.Wait.IsZero() {
		wait = s.r.defWait
	}
	wait = liveWait(p.conf, wait)
	settle := cmp.Or(p.conf.Settle, DefaultSettle)
	t := &tmplState{
		conf: p.conf, tmpl: p.tmpl, parseErr: p.err,
		keys:     s.r.sourceKeys(p.conf),
		triggers: s.r.triggersOf(p.conf),
		sources:  map[string]Source{},
		deb:      watcher.NewDebouncer(ctx, wait, cmp.Or(p.conf.MinReloadInterval, s.r.minIntvl)),
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
	for _, k := range t.keys {
		t.sources[k] = s.acquireSource(k)
	}
	t.binder = s.r.binderOf(t.keys, t.sources)
	s.startLive(ctx, t)
	s.tmpls[p.conf.Name] = t
	go s.watchTemplate(ctx, t)
}
