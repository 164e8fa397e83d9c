package file

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/internal/kvdiff"
)

const (
	// historySize is how many past revisions a Watch can resume from.
	historySize = 32
	// settle is how long the watcher waits after a file event for more
	// (an editor's save is several events) before re-reading.
	settle = 20 * time.Millisecond
)

// Store is a read-only store.Store on YAML/JSON files. Create it with New.
type Store struct {
	path   string // the file or directory, absolute
	isDir  bool
	logger *slog.Logger
	fsw    *fsnotify.Watcher

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the fsnotify loop

	mu      sync.Mutex
	closed  bool
	rev     store.Revision
	data    []store.KV                      // sorted by key; shared with history, never modified
	stamp   string                          // hash of the files data was parsed from
	sizes   map[string]int                  // size of each file data was parsed from
	targets atomic.Pointer[map[string]bool] // targets of sources that are symbolic links
	changed chan struct{}
	history *kvdiff.History
	watched map[string]bool // directories fsw watches
}

var _ store.Store = (*Store)(nil)

// New reads path, a YAML or JSON file or a directory of them (*.yaml,
// *.yml, *.json, recursively, merged in lexical order), and watches it for
// changes. A syntax error fails New with the file and line.
func New(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if path == "" {
		return nil, errors.New("file store: no path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("file store %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("file store: %w", err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file store %s: watching: %w", abs, err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		path:    abs,
		isDir:   fi.IsDir(),
		logger:  cmp.Or(logger, slog.Default()).With("store", "file://"+abs),
		fsw:     fsw,
		ctx:     sctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		history: kvdiff.NewHistory(historySize),
		watched: make(map[string]bool),
	}
	// Watch the directory, not the file: editors save by writing a new
	// file and renaming it over the old one, which a watch on the old
	// file's inode would not see.
	dir := abs
	if !s.isDir {
		dir = filepath.Dir(abs)
	}
	if err := s.watchDir(dir); err != nil {
		s.Close()
		return nil, err
	}
	s.mu.Lock()
	_, err = s.reload()
	s.mu.Unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.loop()
	return s, nil
}

func (s *Store) watchDir(dir string) error {
	if s.watched[dir] {
		return nil
	}
	if err := s.fsw.Add(dir); err != nil {
		return fmt.Errorf("file store %s: watching %s: %w", s.path, dir, err)
	}
	s.watched[dir] = true
	return nil
}

// files lists the files the store reads, in merge order, and watches the
// directories under a directory store.
func (s *Store) files() ([]string, error) {
	seen := make(map[string]bool)
	if !s.isDir {
		names := []string{s.path}
		return names, s.followLinks(names, seen)
	}
	var names []string
	err := filepath.WalkDir(s.path, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name != s.path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir // hidden, like Kubernetes' ..2006_01_02 data dirs
			}
			seen[name] = true
			return s.watchDir(name)
		}
		if isSource(name) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.followLinks(names, seen); err != nil {
		return nil, err
	}
	// Forget directories that are gone (fsnotify dropped their watches), so
	// that one created again under the same name is watched again.
	for dir := range s.watched {
		if !seen[dir] {
			delete(s.watched, dir)
			_ = s.fsw.Remove(dir)
		}
	}
	return names, nil
}

// followLinks watches the directory of every source that is a symbolic
// link to a file elsewhere (values.yaml → /srv/shared/values.yaml): an edit
// of the target makes no event in the link's directory.
func (s *Store) followLinks(names []string, seen map[string]bool) error {
	targets := make(map[string]bool)
	for _, name := range names {
		real, err := filepath.EvalSymlinks(name)
		if err != nil || real == name {
			continue
		}
		targets[real] = true
		dir := filepath.Dir(real)
		seen[dir] = true
		if err := s.watchDir(dir); err != nil {
			return err
		}
	}
	s.targets.Store(&targets)
	return nil
}

// isSource reports whether name is a file a directory store reads: a
// *.yaml, *.yml or *.json file that is not hidden (editors' temporary and
// lock files are).
func isSource(name string) bool {
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") {
		return false
	}
	switch filepath.Ext(base) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// maxRereads bounds how often reload reads the files again waiting for
// them to hold still.
const maxRereads = 10

// readAll reads every source file and returns their names, contents and a
// stamp of both: file times are too coarse to tell two quick edits apart.
func (s *Store) readAll() (names []string, contents [][]byte, stamp string, err error) {
	if names, err = s.files(); err != nil {
		return nil, nil, "", fmt.Errorf("file store %s: %w", s.path, err)
	}
	contents = make([][]byte, len(names))
	sum := sha256.New()
	for i, name := range names {
		if contents[i], err = os.ReadFile(name); err != nil {
			return nil, nil, "", fmt.Errorf("file store %s: %w", s.path, err)
		}
		fmt.Fprintf(sum, "%s\x00%d\x00", name, len(contents[i]))
		sum.Write(contents[i])
	}
	return names, contents, string(sum.Sum(nil)), nil
}

// reload re-reads the files if they changed since the last read, and
// reports whether the data changed. Keys whose values did not change keep
// their revision. On an error the last good data stays. s.mu must be held.
func (s *Store) reload() (bool, error) {
	names, contents, stamp, err := s.readAll()
	if err != nil {
		return false, err
	}
	if stamp == s.stamp && s.rev > 0 {
		return false, nil
	}
	// A change: take it only once two reads a settle interval apart agree,
	// so that a file caught in the middle of a write (truncated, half
	// written) is never taken for the data: that would wipe keys and render
	// empty files.
	for range maxRereads {
		time.Sleep(settle)
		names2, contents2, stamp2, err := s.readAll()
		if err != nil {
			return false, err
		}
		if stamp2 == stamp {
			break
		}
		names, contents, stamp = names2, contents2, stamp2
	}
	// A file that had content and now has none is being rewritten in
	// place (truncated, not yet written): keep the last good data; the
	// write that follows brings an event. (To empty a file on purpose,
	// write "{}".)
	sizes := make(map[string]int, len(names))
	for i, name := range names {
		sizes[name] = len(contents[i])
		if len(contents[i]) == 0 && s.sizes[name] > 0 {
			s.logger.Info("source file is empty, as while it is being rewritten; keeping its last contents", "file", name)
			return false, nil
		}
	}
	vars := make(map[string]string)
	for i, name := range names {
		if err := parseFile(name, contents[i], vars); err != nil {
			return false, fmt.Errorf("file store: %w", err)
		}
	}
	s.stamp, s.sizes = stamp, sizes

	next := s.rev + 1
	old := s.data
	data := make([]store.KV, 0, len(vars))
	changed := len(vars) != len(old)
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		kv := store.KV{Key: k, Value: []byte(vars[k]), ModRevision: next}
		if i, ok := slices.BinarySearchFunc(old, k, byKey); ok && bytes.Equal(old[i].Value, kv.Value) {
			kv.ModRevision = old[i].ModRevision
		} else {
			changed = true
		}
		data = append(data, kv)
	}
	if !changed && s.rev > 0 {
		return false, nil
	}
	s.rev, s.data = next, data
	s.history.Add("", next, data)
	close(s.changed)
	s.changed = make(chan struct{})
	return true, nil
}

func byKey(kv store.KV, key string) int { return strings.Compare(kv.Key, key) }

// current re-reads the files if needed and returns the data and revision.
func (s *Store) current(op string) ([]store.KV, store.Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, fmt.Errorf("file store %s: %s: %w", s.path, op, store.ErrClosed)
	}
	if _, err := s.reload(); err != nil {
		return nil, 0, err
	}
	return s.data, s.rev, nil
}

// Get returns one key of the current data.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	data, _, err := s.current("get")
	if err != nil {
		return store.KV{}, err
	}
	i, ok := slices.BinarySearchFunc(data, key, byKey)
	if !ok {
		return store.KV{}, fmt.Errorf("file store %s: get %q: %w", s.path, key, store.ErrNotFound)
	}
	return data[i], nil
}

// List returns every key under prefix, re-reading the files if they
// changed; a file with a syntax error fails it with the file and line.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	data, rev, err := s.current("list")
	if err != nil {
		return nil, 0, err
	}
	return slices.Clone(kvdiff.Filter(data, prefix)), rev, nil
}

// Put fails: the file store is read-only.
func (s *Store) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	return 0, s.readOnly("put", key)
}

// Delete fails: the file store is read-only.
func (s *Store) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	return 0, s.readOnly("delete", key)
}

// Txn fails: the file store is read-only.
func (s *Store) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	key := ""
	if len(ops) > 0 {
		key = ops[0].Key
	}
	return 0, s.readOnly("txn", key)
}

func (s *Store) readOnly(op, key string) error {
	return fmt.Errorf("file store %s: %s %q: %w (edit the files instead)", s.path, op, key, store.ErrReadOnly)
}

// Close stops watching the files. Watches end with store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.fsw.Close()
	s.wg.Wait()
	return err
}

// loop re-reads the files after fsnotify reports changes, until Close.
// A broken file keeps the last good data; the error is logged with the
// file and line, and nothing is emitted until it is fixed.
func (s *Store) loop() {
	defer s.wg.Done()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.fsw.Events:
			if !ok {
				return
			}
			if !s.relevant(ev) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(settle)
				fire = timer.C
			} else {
				timer.Reset(settle)
			}
		case err, ok := <-s.fsw.Errors:
			if !ok {
				return
			}
			// An overflow loses events, not data: re-read to be sure.
			s.logger.Warn("file watch error; re-reading", "err", err)
			s.refresh()
		case <-fire:
			timer, fire = nil, nil
			s.refresh()
		}
	}
}

func (s *Store) refresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, err := s.reload(); err != nil {
		s.logger.Error("keeping the last good data", "revision", s.rev, "err", err)
	}
}

// relevant reports whether a file event may change the data.
func (s *Store) relevant(ev fsnotify.Event) bool {
	if t := s.targets.Load(); t != nil && (*t)[ev.Name] {
		return true // the target of a source that is a symbolic link
	}
	if !s.isDir {
		// The file itself, or (when it is a symlink, as in a Kubernetes
		// ConfigMap volume) whatever in its directory it points through;
		// the fingerprint tells whether the file really changed.
		return ev.Name == s.path || !isSource(ev.Name)
	}
	if isSource(ev.Name) {
		return true
	}
	// A new, removed or renamed directory may hold sources.
	fi, err := os.Stat(ev.Name)
	return ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) || (err == nil && fi.IsDir())
}
