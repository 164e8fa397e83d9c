package dialect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/store"
)

// randomSnapshot returns a sorted snapshot of random keys, some of them
// not clean paths, from a small name space so that changes hit existing
// directories.
func randomSnapshot(rng *rand.Rand, prev []store.KV, changes int) []store.KV {
	m := map[string]store.KV{}
	for _, kv := range prev {
		m[kv.Key] = kv
	}
	seg := func() string { return []string{"a", "b", "c", "svc", "x.y"}[rng.IntN(5)] }
	for range changes {
		var k string
		switch depth := rng.IntN(5); {
		case rng.IntN(40) == 0:
			k = []string{"/a//b", "a/b", "/a/b/", "/", "/a/./c"}[rng.IntN(5)]
		default:
			for range depth + 1 {
				k += "/" + seg()
			}
		}
		if _, ok := m[k]; ok && rng.IntN(2) == 0 {
			delete(m, k)
			continue
		}
		m[k] = store.KV{Key: k, Value: fmt.Appendf(nil, `{"v":%d}`, rng.IntN(3))}
	}
	out := make([]store.KV, 0, len(m))
	for _, kv := range m {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// TestDirIndexMatchesScan follows random change sequences with the index
// and compares every listing with the scan that defines it.
func TestDirIndexMatchesScan(t *testing.T) {
	dirs := []string{"/", "", "/a", "/a/", "/a//", "a", "/a/b", "/a/b/", "/svc", "/x.y/a", "/nope", "/a/./b", "/a/b/c/a"}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 9))
		var ix dirIndex
		var kvs []store.KV
		for step := range 60 {
			kvs = randomSnapshot(rng, kvs, 1+rng.IntN(4))
			ix.follow(kvs)
			indexed, scanned := &kvStore{kvs: kvs, ix: &ix}, &kvStore{kvs: kvs}
			for _, d := range dirs {
				if got, want := indexed.lsdir(d), scanned.lsdir(d); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: lsdir(%q) = %q, scan gives %q", seed, step, d, got, want)
				}
				if got, want := indexed.ls(d), scanned.ls(d); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: ls(%q) = %q, scan gives %q", seed, step, d, got, want)
				}
			}
		}
	}
}

// TestGetsMatchesScan checks gets, which reads only the keys under its
// pattern's literal part, against path.Match over every key.
func TestGetsMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	kvs := randomSnapshot(rng, nil, 200)
	s := &kvStore{kvs: kvs}
	for _, p := range []string{"/a/*", "/a/b/*", "/*/b", "/a/b", "/sv?/*", "/[ab]/*", `/a\/b`, "*", "/a/*/*", "/x.y/*"} {
		got, err := s.gets(p)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, kv := range kvs {
			if ok, _ := path.Match(p, kv.Key); ok {
				want = append(want, kv.Key)
			}
		}
		var keys []string
		for _, g := range got {
			keys = append(keys, g.Key)
		}
		if !slices.Equal(keys, want) {
			t.Errorf("gets(%q) = %q, want %q", p, keys, want)
		}
	}
	if _, err := s.gets("/a/["); err == nil {
		t.Error("gets of a bad pattern did not fail")
	}
}

// TestMemoKeepsExecutionsApart: a template that modifies what fromJson
// returned does not change what the next execution decodes, and one that
// cannot modify it still renders each value as decoded.
func TestMemoKeepsExecutionsApart(t *testing.T) {
	in := Input{KVs: []store.KV{{Key: "/cfg", Value: []byte(`{"n":1,"l":[1,2]}`)}}, Env: map[string]string{}}
	for _, tt := range []struct{ name, text, want string }{
		{"set", `{{ $v := getv "/cfg" | fromJson }}{{ $v.n }}{{ $_ := set $v "n" 2 }}`, "1"},
		{"unset", `{{ $v := getv "/cfg" | fromJson }}{{ $v.n }}{{ $_ := unset $v "n" }}`, "1"},
		{"read", `{{ $v := getv "/cfg" | fromJson }}{{ $v.n }}{{ $v.l }}`, "1[1 2]"},
	} {
		tm, err := ParseString("m.tmpl", tt.text, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			var buf bytes.Buffer
			if err := tm.Execute(&buf, in); err != nil {
				t.Fatal(err)
			}
			if buf.String() != tt.want {
				t.Errorf("%s, execution %d: %q, want %q", tt.name, i, buf.String(), tt.want)
			}
		}
	}
}

// TestNaturalChangesMatchFreshRenders renders the natural template after
// random adds, deletes and value changes with one long-lived template (its
// memo following the snapshots, its blocks memoized) and compares each
// output with a fresh template's that memoizes nothing.
func TestNaturalChangesMatchFreshRenders(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	in := peerInput(300)
	tm, err := ParseString("natural.tmpl", naturalUpstreams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for step := range 200 {
		in = randomChange(rng, in)
		var got, want bytes.Buffer
		if err := tm.Execute(&got, in); err != nil {
			t.Fatal(err)
		}
		fresh, _ := ParseString("natural.tmpl", naturalUpstreams, Options{AllowNondeterministic: true})
		if err := fresh.Execute(&want, in); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("step %d: the memoized render differs from a fresh one", step)
		}
	}
}

// randomChange changes, adds or deletes one key of in, as one put or
// delete does to a mirror's snapshot.
func randomChange(rng *rand.Rand, in Input) Input {
	kvs := slices.Clone(in.KVs)
	rev := in.Revision + 1
	switch i := rng.IntN(len(kvs)); rng.IntN(3) {
	case 0:
		kvs[i].Value = fmt.Appendf(nil, `{"host":"10.0.0.%d","port":%d}`, rng.IntN(256), rng.IntN(65536))
		kvs[i].ModRevision = rev
	case 1:
		kvs = slices.Delete(kvs, i, i+1)
	default:
		k := fmt.Sprintf("/services/svc-%04d/new-%d", rng.IntN(40), rev)
		j, _ := slices.BinarySearchFunc(kvs, k, byKey)
		kvs = slices.Insert(kvs, j, store.KV{Key: k, Value: []byte(`{"host":"10.1.1.1","port":1}`), ModRevision: rev})
	}
	return Input{Revision: rev, KVs: kvs, Env: in.Env}
}
