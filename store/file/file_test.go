package file_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/file"
	"github.com/berthd/berth/store/storetest"
)

// dataDir is a directory of YAML files the conformance suite edits through
// Write: one file per top-level test prefix, saved the way editors do
// (write a temporary file, rename it over the old one).
type dataDir struct {
	dir   string
	mu    sync.Mutex
	files map[string]map[string]string // file name → key → value
}

func (d *dataDir) write(t *testing.T, puts map[string]string, deletes []string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	touched := map[string]bool{}
	for k, v := range puts {
		name := fileFor(k)
		if d.files[name] == nil {
			d.files[name] = map[string]string{}
		}
		d.files[name][k] = v
		touched[name] = true
	}
	for _, k := range deletes {
		name := fileFor(k)
		delete(d.files[name], k)
		touched[name] = true
	}
	for name := range touched {
		saveYAML(t, filepath.Join(d.dir, name), nest(t, d.files[name]))
	}
}

// fileFor names the file that holds key: one per "/storetest/<test>-<id>".
func fileFor(key string) string {
	parts := strings.SplitN(strings.TrimPrefix(key, "/"), "/", 3)
	if len(parts) < 3 {
		return "misc.yaml"
	}
	return parts[1] + ".yaml"
}

// nest turns flat keys into the nested maps confd-style flattening reads
// back as the same keys.
func nest(t *testing.T, flat map[string]string) map[string]any {
	root := map[string]any{}
	for k, v := range flat {
		segs := strings.Split(strings.TrimPrefix(k, "/"), "/")
		m := root
		for _, seg := range segs[:len(segs)-1] {
			next, ok := m[seg].(map[string]any)
			if !ok {
				if _, leaf := m[seg]; leaf {
					t.Fatalf("key %q is both a value and a directory", k)
				}
				next = map[string]any{}
				m[seg] = next
			}
			m = next
		}
		m[segs[len(segs)-1]] = v
	}
	return root
}

// saveYAML writes doc to name atomically, as editors save.
func saveYAML(t *testing.T, name string, doc any) {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	save(t, name, string(b))
}

func save(t *testing.T, name, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func TestConformance(t *testing.T) {
	d := &dataDir{dir: t.TempDir(), files: map[string]map[string]string{}}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			s, err := file.New(t.Context(), d.dir, nil)
			if err != nil {
				t.Fatalf("file.New: %v", err)
			}
			return s
		},
		ReadOnly:  true,
		Write:     d.write,
		Coalesces: true,
	})
}

func TestFlattenLikeConfd(t *testing.T) {
	tests := []struct {
		name, file, content string
		want                map[string]string
	}{
		{
			name: "nested maps and scalars", file: "a.yaml",
			content: "database:\n  host: 127.0.0.1\n  port: 3306\n  ratio: 0.5\n  whole: 1.0\n  enabled: true\n  nothing: ~\n  date: 2001-12-14\n",
			want: map[string]string{
				"/database/host": "127.0.0.1", "/database/port": "3306", "/database/ratio": "0.5",
				"/database/whole": "1", "/database/enabled": "true", "/database/date": "2001-12-14",
			},
		},
		{
			name: "lists are indexed", file: "b.yml",
			content: "upstreams:\n  - 10.0.0.1:80\n  - 10.0.0.2:80\nservers:\n  - name: a\n    ports: [80, 443]\n  - name: b\n",
			want: map[string]string{
				"/upstreams/0": "10.0.0.1:80", "/upstreams/1": "10.0.0.2:80",
				"/servers/0/name": "a", "/servers/0/ports/0": "80", "/servers/0/ports/1": "443",
				"/servers/1/name": "b",
			},
		},
		{
			name: "json, tab-indented", file: "c.json",
			content: "{\n\t\"app\": {\n\t\t\"name\": \"web\",\n\t\t\"replicas\": 3,\n\t\t\"tags\": [\"a\", \"b\"]\n\t}\n}\n",
			want:    map[string]string{"/app/name": "web", "/app/replicas": "3", "/app/tags/0": "a", "/app/tags/1": "b"},
		},
		{
			name: "keys are joined and cleaned like paths", file: "d.yaml",
			content: "a/b: 1\n\"x y\": z\n7: seven\n",
			want:    map[string]string{"/a/b": "1", "/x y": "z", "/7": "seven"},
		},
		{name: "empty file", file: "e.yaml", content: "", want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(name, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := file.New(t.Context(), name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := listMap(t, s, "/"); !maps.Equal(got, tt.want) {
				t.Fatalf("keys = %v\nwant   %v", got, tt.want)
			}
		})
	}
}

func listMap(t *testing.T, s store.Store, prefix string) map[string]string {
	t.Helper()
	kvs, _, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.Key] = string(kv.Value)
	}
	return m
}

func TestSyntaxErrorNamesFileAndLine(t *testing.T) {
	tests := []struct {
		file, content, want string
	}{
		{"bad.yaml", "a: 1\nb: c: d\n", "bad.yaml:2: mapping values are not allowed in this context"},
		{"bad.json", "{\n  \"a\": 1,\n  \"b\" 2\n}\n", "bad.json:2: did not find expected ',' or '}'"},
		{"tab.yaml", "a:\n\tb: 1\n", "tab.yaml:2: "},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, tt.file)
			if err := os.WriteFile(name, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := file.New(t.Context(), name, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
			// In a directory, the broken file is named the same way.
			_, err = file.New(t.Context(), dir, nil)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, tt.want)) {
				t.Fatalf("New(dir): %v, want an error containing %q", err, filepath.Join(dir, tt.want))
			}
		})
	}
}

func TestBrokenFileKeepsLastGoodData(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "values.yaml")
	save(t, name, "app:\n  port: 80\n")
	s, err := file.New(t.Context(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Watch(ctx, "/app/", 0)

	save(t, name, "app:\n  port: 80\n  host: [\n")
	if _, _, err := s.List(t.Context(), "/app/"); err == nil || !strings.Contains(err.Error(), "values.yaml:3:") {
		t.Fatalf("List of a broken file: %v, want file:line", err)
	}
	select {
	case resp := <-ch:
		t.Fatalf("watch emitted %+v for a broken file", resp)
	case <-time.After(300 * time.Millisecond):
	}

	save(t, name, "app:\n  port: 8080\n")
	select {
	case resp := <-ch:
		if resp.Err != nil || len(resp.Events) != 1 || string(resp.Events[0].KV.Value) != "8080" {
			t.Fatalf("after the fix: %+v, want one put of 8080", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event after fixing the file")
	}
}

func TestWatchSeesEditorSaves(t *testing.T) {
	tests := []struct {
		name string
		edit func(t *testing.T, name, content string)
	}{
		{"rename over", save},
		{"write in place", func(t *testing.T, name, content string) {
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"remove and create", func(t *testing.T, name, content string) {
			os.Remove(name)
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "values.yaml")
			save(t, name, "a: 1\nb: 2\n")
			s, err := file.New(t.Context(), name, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := s.Watch(ctx, "/", 0)
			tt.edit(t, name, "a: 1\nb: 3\nc: 4\n")
			got := map[string]string{}
			deadline := time.After(10 * time.Second)
			for !maps.Equal(got, map[string]string{"/b": "3", "/c": "4"}) {
				select {
				case resp := <-ch:
					if resp.Err != nil {
						t.Fatal(resp.Err)
					}
					for _, ev := range resp.Events {
						got[ev.KV.Key] = string(ev.KV.Value)
					}
				case <-deadline:
					t.Fatalf("events after the edit: %v", got)
				}
			}
		})
	}
}

func TestDirectoryMergesInOrderAndSkipsOthers(t *testing.T) {
	dir := t.TempDir()
	save(t, filepath.Join(dir, "10-base.yaml"), "app:\n  port: 80\n  name: base\n")
	save(t, filepath.Join(dir, "20-override.json"), `{"app": {"port": 8080}}`)
	save(t, filepath.Join(dir, "notes.txt"), "app: ignored\n")
	save(t, filepath.Join(dir, ".hidden.yaml"), "app: {name: hidden}\n")
	s, err := file.New(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]string{"/app/port": "8080", "/app/name": "base"}
	if got := listMap(t, s, "/"); !maps.Equal(got, want) {
		t.Fatalf("merged = %v, want %v", got, want)
	}

	// A file in a new subdirectory is picked up by a running watch.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := s.Watch(ctx, "/", 0)
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the watch on sub/ be added
	save(t, filepath.Join(dir, "sub", "extra.yml"), "extra: yes\n")
	select {
	case resp := <-ch:
		if resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != "/extra" {
			t.Fatalf("watch: %+v, want a put of /extra", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for a file in a new subdirectory")
	}
}

func TestReadOnlyAndMissing(t *testing.T) {
	if _, err := file.New(t.Context(), filepath.Join(t.TempDir(), "missing.yaml"), nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("New of a missing file: %v", err)
	}
	name := filepath.Join(t.TempDir(), "v.yaml")
	save(t, name, "a: 1\n")
	s, err := file.New(t.Context(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(t.Context(), "/nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get of a missing key: %v", err)
	}
	if kv, err := s.Get(t.Context(), "/a"); err != nil || string(kv.Value) != "1" || kv.ModRevision != 1 {
		t.Fatalf("get /a = %+v, %v", kv, err)
	}
}

func TestWatchFromOldRevisions(t *testing.T) {
	name := filepath.Join(t.TempDir(), "v.yaml")
	save(t, name, "n: 0\n")
	s, err := file.New(t.Context(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// 40 changes, each seen by a List: revisions 2..41.
	for i := 1; i <= 40; i++ {
		save(t, name, fmt.Sprintf("n: %d\nk%d: x\n", i, i))
		if _, rev, err := s.List(t.Context(), "/"); err != nil || rev != store.Revision(i+1) {
			t.Fatalf("list after change %d: revision %d, %v", i, rev, err)
		}
	}
	tests := []struct {
		after      store.Revision
		compacted  bool
		wantEvents int
	}{
		{after: 41},                 // now: nothing to replay
		{after: 39, wantEvents: 3},  // {n: 38, k38} → {n: 40, k40}: put n, delete k38, put k40
		{after: 1, compacted: true}, // long gone
		{after: 9, compacted: true}, // just outside the last 32
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.after), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			var events int
			var final error
			for resp := range s.Watch(ctx, "/", tt.after) {
				events += len(resp.Events)
				final = resp.Err
			}
			if tt.compacted != errors.Is(final, store.ErrCompacted) {
				t.Fatalf("watch from %d ended with %v; compacted %v", tt.after, final, tt.compacted)
			}
			if !tt.compacted && events != tt.wantEvents {
				t.Fatalf("watch from %d replayed %d events, want %d", tt.after, events, tt.wantEvents)
			}
		})
	}
}

func TestConfigMapStyleSymlinkSwap(t *testing.T) {
	// Kubernetes updates a ConfigMap volume by writing a new hidden data
	// directory and renaming a "..data" symlink over to it; the visible
	// file is a symlink through ..data and never changes itself.
	dir := t.TempDir()
	writeData := func(gen, content string) {
		d := filepath.Join(dir, "..gen"+gen)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "values.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink("..gen"+gen, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeData("1", "port: 80\n")
	if err := os.Symlink("..data/values.yaml", filepath.Join(dir, "values.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "values.yaml"), dir} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s, err := file.New(t.Context(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			kvs, _, err := s.List(t.Context(), "/")
			if err != nil || len(kvs) != 1 {
				t.Fatalf("list: %v, %v; want just /port (hidden data dirs are not read twice)", kvs, err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ch := s.Watch(ctx, "/", 0)
			gen := fmt.Sprint(time.Now().UnixNano())
			writeData(gen, "port: "+gen+"\n")
			select {
			case resp := <-ch:
				if resp.Err != nil || len(resp.Events) != 1 || string(resp.Events[0].KV.Value) != gen {
					t.Fatalf("watch: %+v, want a put of port %s", resp, gen)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no event after the ..data symlink swap")
			}
		})
	}
}

func TestQuickSameSizeEditsInPlace(t *testing.T) {
	// Two in-place writes of the same size within a clock tick leave size,
	// inode and modification time alike: only the content tells them apart.
	name := filepath.Join(t.TempDir(), "v.yaml")
	save(t, name, "a: 0\n")
	s, err := file.New(t.Context(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 1; i <= 50; i++ {
		want := fmt.Sprint(i % 10)
		if err := os.WriteFile(name, []byte("a: "+want+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if kv, err := s.Get(t.Context(), "/a"); err != nil || string(kv.Value) != want {
			t.Fatalf("edit %d: get = %q, %v; want %q", i, kv.Value, err, want)
		}
	}
}

// BenchmarkEditToEvent measures the time from saving a file (rename over)
// to the watch event for the change.
func BenchmarkEditToEvent(b *testing.B) {
	name := filepath.Join(b.TempDir(), "v.yaml")
	if err := os.WriteFile(name, []byte("n: 0\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := file.New(b.Context(), name, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ch := s.Watch(b.Context(), "/", 0)
	tmp := name + ".tmp"
	i := 0
	for b.Loop() {
		i++
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("n: %d\n", i)), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil {
			b.Fatal(err)
		}
		for got := ""; got != fmt.Sprint(i); {
			resp := <-ch
			if resp.Err != nil {
				b.Fatal(resp.Err)
			}
			for _, ev := range resp.Events {
				got = string(ev.KV.Value)
			}
		}
	}
}

// BenchmarkList10000 measures a List of 10,000 keys from one YAML file
// that is unchanged (read and hashed, not parsed again).
func BenchmarkList10000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("svc:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  k%05d: '{\"ip\":\"10.1.2.3\",\"port\":8080}'\n", i)
	}
	name := filepath.Join(b.TempDir(), "v.yaml")
	if err := os.WriteFile(name, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	s, err := file.New(b.Context(), name, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		kvs, _, err := s.List(b.Context(), "/svc/")
		if err != nil || len(kvs) != 10000 {
			b.Fatalf("list: %d keys, %v", len(kvs), err)
		}
	}
}

// TestRewriteInPlaceNeverEmpty: a file rewritten in place (truncated, then
// written: os.WriteFile, shell redirection) is not taken for empty between
// the two, however long the writer pauses there: a listing never comes
// back without the keys.
func TestRewriteInPlaceNeverEmpty(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "values.yaml")
	var doc strings.Builder
	for i := range 200 {
		fmt.Fprintf(&doc, "key%03d: value%03d\n", i, i)
	}
	if err := os.WriteFile(p, []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := file.New(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return
			}
			f.WriteString(doc.String())
			f.Close()
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		kvs, _, err := st.List(t.Context(), "/")
		if err == nil && len(kvs) != 200 {
			t.Fatalf("listing during an in-place rewrite returned %d keys, want 200", len(kvs))
		}
	}
}

// TestLinkToAnotherDirectory: a source that is a symbolic link to a file in
// another directory is watched there: editing the target is seen.
func TestLinkToAnotherDirectory(t *testing.T) {
	shared, conf := t.TempDir(), t.TempDir()
	target := filepath.Join(shared, "values.yaml")
	os.WriteFile(target, []byte("port: 80\n"), 0o644)
	link := filepath.Join(conf, "values.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{link, conf} { // single-file and directory stores
		st, err := file.New(t.Context(), path, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, rev, _ := st.List(t.Context(), "/")
		ch := st.Watch(t.Context(), "/", rev)
		os.WriteFile(target, []byte("port: 8080\n"), 0o644)
		select {
		case resp := <-ch:
			if resp.Err != nil || len(resp.Events) != 1 || string(resp.Events[0].KV.Value) != "8080" {
				t.Fatalf("%s: %+v", path, resp)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: editing the link's target was not seen", path)
		}
		os.WriteFile(target, []byte("port: 80\n"), 0o644)
		st.Close()
	}
}
