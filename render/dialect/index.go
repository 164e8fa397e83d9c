package dialect

import (
	"path"
	"slices"
	"strings"

	"github.com/berthd/berth/store"
)

// dirIndex answers directory listings (memkv's ls and lsdir) of one
// snapshot without scanning its keys: for every directory, its children
// and how many keys are the child or lie below it. It follows the
// snapshots a template renders by the keys added and removed between
// them, so a change of one key costs one key's segments, and a change of
// values alone costs nothing beyond comparing the keys.
//
// It answers only for clean absolute directories ("/a/b" or "/a/b/")
// below the root while every key of the snapshot is a clean absolute path;
// otherwise the callers scan, which is the definition.
type dirIndex struct {
	kvs     []store.KV // the snapshot indexed
	dirs    map[string]*dirNode
	unclean int // keys the index cannot place (not clean absolute paths)
}

type dirNode struct {
	children map[string]*childCount
	subdirs  []string // sorted names of the children with keys below; nil when stale
	all      []string // sorted names of every child; nil when stale
}

type childCount struct {
	key   int // 1 when the child is itself a key
	below int // keys below the child
}

// follow brings the index to kvs (sorted by key).
func (ix *dirIndex) follow(kvs []store.KV) {
	prev := ix.kvs
	ix.kvs = kvs
	if ix.dirs == nil {
		ix.dirs, ix.unclean = map[string]*dirNode{}, 0
		for _, kv := range kvs {
			ix.add(kv.Key, 1)
		}
		return
	}
	if len(prev) == len(kvs) && (len(kvs) == 0 || &prev[0] == &kvs[0]) {
		return // the same snapshot
	}
	// Walk both sorted lists: keys only in prev are gone, keys only in kvs
	// are new. Unchanged keys are mostly the same strings (the mirror's
	// snapshots share them), which compare at once.
	i, j := 0, 0
	for i < len(prev) || j < len(kvs) {
		switch {
		case i == len(prev):
			ix.add(kvs[j].Key, 1)
			j++
		case j == len(kvs):
			ix.add(prev[i].Key, -1)
			i++
		case prev[i].Key == kvs[j].Key:
			i++
			j++
		case prev[i].Key < kvs[j].Key:
			ix.add(prev[i].Key, -1)
			i++
		default:
			ix.add(kvs[j].Key, 1)
			j++
		}
	}
}

// cleanAbs reports whether p is a clean absolute path below the root.
func cleanAbs(p string) bool { return len(p) > 1 && p[0] == '/' && path.Clean(p) == p }

// add counts key in (delta 1) or out (-1) of every directory above it.
func (ix *dirIndex) add(key string, delta int) {
	if !cleanAbs(key) {
		ix.unclean += delta
		return
	}
	// For "/a/b/c": directory "/a" has child "b" with a key below it,
	// directory "/a/b" has the key "c". The root is not indexed.
	for i := strings.IndexByte(key[1:], '/') + 1; i > 0; {
		dir, rest := key[:i], key[i+1:]
		next := strings.IndexByte(rest, '/')
		child := rest
		if next >= 0 {
			child = rest[:next]
		}
		n := ix.dirs[dir]
		if n == nil {
			n = &dirNode{children: map[string]*childCount{}}
			ix.dirs[dir] = n
		}
		c := n.children[child]
		if c == nil {
			c = &childCount{}
			n.children[child] = c
		}
		hadBelow, had := c.below > 0, c.key+c.below > 0
		if next >= 0 {
			c.below += delta
		} else {
			c.key += delta
		}
		if hadBelow != (c.below > 0) {
			n.subdirs = nil
		}
		if had != (c.key+c.below > 0) {
			n.all = nil
			if c.key+c.below == 0 {
				delete(n.children, child)
			}
		}
		if next < 0 {
			break
		}
		i += 1 + next
	}
}

// node returns the directory dir names, and whether the index answers for
// it at all.
func (ix *dirIndex) node(dir string) (*dirNode, bool) {
	if ix == nil || ix.dirs == nil || ix.unclean > 0 {
		return nil, false
	}
	if d := strings.TrimSuffix(dir, "/"); d != dir && cleanAbs(d) {
		dir = d
	} else if !cleanAbs(dir) {
		return nil, false
	}
	return ix.dirs[dir], true
}

// lsdir is memkv's ListDir: the sorted names of the directories directly
// under dir. ok is false when the index does not answer.
func (ix *dirIndex) lsdir(dir string) (names []string, ok bool) {
	n, ok := ix.node(dir)
	if !ok {
		return nil, false
	}
	if n == nil {
		return []string{}, true
	}
	if n.subdirs == nil {
		n.subdirs = []string{}
		for name, c := range n.children {
			if c.below > 0 {
				n.subdirs = append(n.subdirs, name)
			}
		}
		slices.Sort(n.subdirs)
	}
	return slices.Clone(n.subdirs), true
}

// children returns the sorted names of every entry (key or directory)
// directly under dir.
func (ix *dirIndex) children(dir string) (names []string, ok bool) {
	n, ok := ix.node(dir)
	if !ok {
		return nil, false
	}
	if n == nil {
		return []string{}, true
	}
	if n.all == nil {
		n.all = make([]string, 0, len(n.children))
		for name := range n.children {
			n.all = append(n.all, name)
		}
		slices.Sort(n.all)
	}
	return slices.Clone(n.all), true
}
