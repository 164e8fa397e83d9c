package dialect

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/berthd/berth/store"
)

// kvPair is one key of the snapshot as templates see it. For confd's get
// and gets (memkv), Key is the whole key; for consul-template's ls and
// tree, Key is relative to the listed prefix and Path is the whole key.
type kvPair struct {
	Key         string
	Value       string
	Path        string
	ModRevision store.Revision
}

// kvStore is the read-only key/value view of one snapshot that the key
// functions of the native and confd dialects read: memkv's semantics
// (confd) and consul-template's (key, ls, tree...).
type kvStore struct {
	kvs []store.KV // sorted by key
	// ix answers ls and lsdir when set and able (nil: scan); it is
	// brought to kvs at its first use (followed).
	ix       *dirIndex
	followed bool
	rec      *[]dep // the reads of the memoized block being executed; nil: none
	// changed are the keys (sorted) added, removed or modified since the
	// snapshot of the memo's execution since; delta says they are known.
	changed []string
	since   uint64
	delta   bool
}

// index returns the directory index, current to s.kvs, or nil.
func (s *kvStore) index() *dirIndex {
	if s.ix != nil && !s.followed {
		s.ix.follow(s.kvs)
		s.followed = true
	}
	return s.ix
}

// newKVStore builds the view of kvs, which Input promises sorted by key
// (a copy is sorted if they are not). With strip set (confd), keys are
// made relative to strip as confd stores them in memkv:
// path.Join("/", strings.TrimPrefix(key, strip)).
func newKVStore(kvs []store.KV, strip string) *kvStore {
	byKeys := func(a, b store.KV) int { return cmp.Compare(a.Key, b.Key) }
	if strip == "" {
		if !slices.IsSortedFunc(kvs, byKeys) {
			kvs = slices.Clone(kvs)
			slices.SortStableFunc(kvs, byKeys)
		}
		return &kvStore{kvs: kvs}
	}
	out := make([]store.KV, len(kvs))
	for i, kv := range kvs {
		kv.Key = path.Join("/", strings.TrimPrefix(kv.Key, strip))
		out[i] = kv
	}
	slices.SortStableFunc(out, byKeys)
	return &kvStore{kvs: out}
}

func pairOf(kv store.KV) kvPair {
	return kvPair{Key: kv.Key, Path: kv.Key, Value: string(kv.Value), ModRevision: kv.ModRevision}
}

func byKey(kv store.KV, key string) int { return cmp.Compare(kv.Key, key) }

// find returns the index of key.
func (s *kvStore) find(key string) (int, bool) {
	return slices.BinarySearchFunc(s.kvs, key, byKey)
}

// lookup finds one key.
func (s *kvStore) lookup(key string) (kvPair, bool) {
	i, ok := s.find(key)
	if s.rec != nil {
		d := dep{kind: 'k', arg: key}
		if ok {
			d.kvs = []store.KV{s.kvs[i]}
		}
		s.record(d)
	}
	if !ok {
		return kvPair{}, false
	}
	return pairOf(s.kvs[i]), true
}

// span returns the keys that start with prefix.
func (s *kvStore) span(prefix string) []store.KV {
	i, _ := s.find(prefix)
	return s.spanFrom(prefix, i)
}

// spanAt is span, trying first whether the keys begin at index i (as
// they did in an earlier snapshot with the same keys before them).
func (s *kvStore) spanAt(prefix string, i int) []store.KV {
	if i < 0 || i >= len(s.kvs) || !strings.HasPrefix(s.kvs[i].Key, prefix) || i > 0 && s.kvs[i-1].Key >= prefix {
		return s.span(prefix)
	}
	return s.spanFrom(prefix, i)
}

func (s *kvStore) spanFrom(prefix string, i int) []store.KV {
	j := i
	for j < len(s.kvs) && strings.HasPrefix(s.kvs[j].Key, prefix) {
		j++
	}
	return s.kvs[i:j:j]
}

// under returns the keys that start with prefix, a read of them all.
func (s *kvStore) under(prefix string) []store.KV {
	i, _ := s.find(prefix)
	kvs := s.spanFrom(prefix, i)
	if s.rec != nil {
		s.record(dep{kind: 'u', arg: prefix, kvs: slices.Clone(kvs), at: i})
	}
	return kvs
}

// errNotExist is memkv's error for a missing key.
func errNotExist(key string) error { return fmt.Errorf("key does not exist: %s", key) }

// --- memkv (confd) ---

// get returns one pair; a missing key is an error.
func (s *kvStore) get(key string) (kvPair, error) {
	p, ok := s.lookup(key)
	if !ok {
		return kvPair{}, errNotExist(key)
	}
	return p, nil
}

// gets returns the pairs whose key matches the path.Match pattern, sorted
// by key.
func (s *kvStore) gets(pattern string) ([]kvPair, error) {
	out := []kvPair{}
	if len(s.kvs) == 0 {
		s.under("") // the snapshot is empty: a read of every key
		return out, nil
	}
	// A bad pattern is an error whatever the keys; a good one matches only
	// keys that start with its literal part.
	if _, err := path.Match(pattern, s.kvs[0].Key); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	lit := pattern
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		lit = pattern[:i]
	}
	for _, kv := range s.under(lit) {
		ok, err := path.Match(pattern, kv.Key)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pattern, err)
		}
		if ok {
			out = append(out, pairOf(kv))
		}
	}
	return out, nil
}

// getv returns a value; for a missing key the default if one is given,
// else an error.
func (s *kvStore) getv(key string, def ...string) (string, error) {
	p, ok := s.lookup(key)
	if !ok {
		if len(def) > 0 {
			return def[0], nil
		}
		return "", errNotExist(key)
	}
	return p.Value, nil
}

// getvs returns the values of the keys matching pattern, sorted by value.
func (s *kvStore) getvs(pattern string) ([]string, error) {
	ps, err := s.gets(pattern)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Value
	}
	slices.Sort(out)
	return out, nil
}

// exists reports whether key exists.
func (s *kvStore) exists(key string) bool {
	_, ok := s.lookup(key)
	return ok
}

// terms splits a path into its cleaned segments.
func terms(p string) []string { return strings.Split(path.Clean(p), "/") }

// hasTerms reports whether test starts with the segments of prefix.
func hasTerms(prefix, test []string) bool {
	return len(test) >= len(prefix) && slices.Equal(prefix, test[:len(prefix)])
}

// ls returns the sorted names of the entries (keys and directories)
// directly under dir; for a key equal to dir, its base name (memkv List).
func (s *kvStore) ls(dir string) []string {
	if names, ok := s.index().children(dir); ok {
		if s.rec != nil {
			s.record(dep{kind: 'l', arg: dir, names: slices.Clone(names)})
		}
		if s.exists(dir) {
			if b := path.Base(dir); !slices.Contains(names, b) {
				names = append(names, b)
				slices.Sort(names)
			}
		}
		return names
	}
	s.under("") // a read of every key
	prefix := terms(dir)
	seen := map[string]bool{}
	for _, kv := range s.kvs {
		if kv.Key == dir {
			seen[path.Base(kv.Key)] = true
			continue
		}
		if hasTerms(prefix, terms(path.Dir(kv.Key))) {
			rest := strings.TrimPrefix(strings.TrimPrefix(kv.Key, dir), "/")
			seen[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	return sortedKeys(seen)
}

// lsdir returns the sorted names of the directories directly under dir
// (memkv ListDir).
func (s *kvStore) lsdir(dir string) []string {
	if names, ok := s.index().lsdir(dir); ok {
		if s.rec != nil {
			s.record(dep{kind: 'd', arg: dir, names: slices.Clone(names)})
		}
		return names
	}
	prefix := terms(dir)
	seen := map[string]bool{}
	for _, kv := range s.under(dir) {
		items := terms(path.Dir(kv.Key))
		if hasTerms(prefix, items) && len(items) > len(prefix) {
			seen[items[len(prefix)]] = true
		}
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// --- consul-template ---

// absKey makes a consul-template style path ("service/web") a store key.
func absKey(key string) string {
	if !strings.HasPrefix(key, "/") {
		return "/" + key
	}
	return key
}

// key returns the value of a key. consul-template waits for a missing key;
// a snapshot cannot, so a missing key refuses the render.
func (s *kvStore) key(key string) (string, error) {
	p, ok := s.lookup(absKey(key))
	if !ok {
		return "", fmt.Errorf("key %q does not exist (keyOrDefault gives a default)", absKey(key))
	}
	return p.Value, nil
}

// keyOrDefault returns the value of key, or def when it does not exist.
func (s *kvStore) keyOrDefault(key, def string) string {
	if p, ok := s.lookup(absKey(key)); ok {
		return p.Value
	}
	return def
}

// keyExists reports whether key exists.
func (s *kvStore) keyExists(key string) bool {
	_, ok := s.lookup(absKey(key))
	return ok
}

// list returns the pairs under prefix as a directory, with Key relative to
// it: only the direct children (top) or every key below (tree).
func (s *kvStore) list(prefix string, top bool) []kvPair {
	dir := strings.TrimSuffix(absKey(prefix), "/") + "/"
	out := []kvPair{}
	for _, kv := range s.under(dir) {
		rel := kv.Key[len(dir):]
		if rel == "" || strings.HasSuffix(rel, "/") || (top && strings.Contains(rel, "/")) {
			continue
		}
		p := pairOf(kv)
		p.Key = rel
		out = append(out, p)
	}
	return out
}

// ctLs is consul-template's ls: the keys directly under prefix.
func (s *kvStore) ctLs(prefix string) []kvPair { return s.list(prefix, true) }

// tree is consul-template's tree: every key under prefix.
func (s *kvStore) tree(prefix string) []kvPair { return s.list(prefix, false) }

// safe refuses to render from an empty listing.
func safe(prefix string, ps []kvPair) ([]kvPair, error) {
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w under %q", ErrNoData, absKey(prefix))
	}
	return ps, nil
}

// safeLs is ls that refuses to render from empty data.
func (s *kvStore) safeLs(prefix string) ([]kvPair, error) { return safe(prefix, s.ctLs(prefix)) }

// safeTree is tree that refuses to render from empty data.
func (s *kvStore) safeTree(prefix string) ([]kvPair, error) { return safe(prefix, s.tree(prefix)) }
