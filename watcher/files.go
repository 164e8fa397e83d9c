package watcher

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// Files watches files for changes through their directories, so that
// editors' atomic saves (write a temporary file, rename it over the old
// one) and Kubernetes-style symlink swaps ("..data") are seen. Subscribers
// name the files they care about and are notified (coalesced, without
// blocking) when any of them changes.
type Files struct {
	fsw *fsnotify.Watcher
	log *slog.Logger

	mu   sync.Mutex
	subs map[*fileSub]struct{}
	dirs map[string]int // watched directory → subscriptions using it
}

type fileSub struct {
	files map[string]bool // absolute, cleaned paths
	dirs  []string
	ch    chan struct{}
}

// NewFiles returns a file watcher; call Run to dispatch its events and
// Close to release it.
func NewFiles(log *slog.Logger) (*Files, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file watcher: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Files{fsw: fsw, log: log, subs: map[*fileSub]struct{}{}, dirs: map[string]int{}}, nil
}

// Watch subscribes to changes of paths. The returned cancel unsubscribes.
func (f *Files) Watch(paths []string) (<-chan struct{}, func(), error) {
	sub := &fileSub{files: map[string]bool{}, ch: make(chan struct{}, 1)}
	seen := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, nil, err
		}
		sub.files[abs] = true
		if d := filepath.Dir(abs); !seen[d] {
			seen[d] = true
			sub.dirs = append(sub.dirs, d)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, d := range sub.dirs {
		if f.dirs[d] == 0 {
			if err := f.fsw.Add(d); err != nil {
				f.releaseLocked(sub.dirs[:i])
				return nil, nil, fmt.Errorf("watch directory %s: %w", d, err)
			}
		}
		f.dirs[d]++
	}
	f.subs[sub] = struct{}{}
	return sub.ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[sub]; ok {
			delete(f.subs, sub)
			f.releaseLocked(sub.dirs)
		}
	}, nil
}

func (f *Files) releaseLocked(dirs []string) {
	for _, d := range dirs {
		f.dirs[d]--
		if f.dirs[d] <= 0 {
			delete(f.dirs, d)
			f.fsw.Remove(d)
		}
	}
}

// Run dispatches file events until ctx ends.
func (f *Files) Run(ctx context.Context) {
	for {
		select {
		case ev, ok := <-f.fsw.Events:
			if !ok {
				return
			}
			f.dispatch(ev)
		case err, ok := <-f.fsw.Errors:
			if !ok {
				return
			}
			f.log.Warn("file watcher error", "err", err)
		case <-ctx.Done():
			return
		}
	}
}

func (f *Files) dispatch(ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	dir, base := filepath.Dir(name), filepath.Base(name)
	// A change to a "..something" entry is a symlink swap of the whole
	// directory's content (Kubernetes ConfigMaps): it concerns every file.
	swap := strings.HasPrefix(base, "..")
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		hit := sub.files[name]
		if !hit && swap {
			for p := range sub.files {
				if filepath.Dir(p) == dir {
					hit = true
					break
				}
			}
		}
		if hit {
			select {
			case sub.ch <- struct{}{}:
			default:
			}
		}
	}
}

// Close stops watching.
func (f *Files) Close() error { return f.fsw.Close() }
