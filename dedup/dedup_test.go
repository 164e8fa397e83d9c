package dedup_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dedup"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/watcher"
)

const (
	dataPrefix = "/t/data/"
	ttl        = 3 * time.Second
	text       = `{{ range tree "/t/data/" }}{{ .Key }}={{ .Value }}
{{ end }}`
)

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// counting is a store that counts, by class of key (data, dedup), the
// requests its host makes and the watch responses it receives: the load
// that host puts on the store. Measurement only: every call goes through.
type counting struct {
	store.Store
	mu     sync.Mutex
	reads  map[string]int // Get, List, and watch responses
	writes map[string]int // keys written by successful Puts, Txns, Deletes
}

func class(key string) string {
	switch {
	case strings.HasPrefix(key, dataPrefix):
		return "data"
	case strings.HasPrefix(key, dedup.DefaultPrefix):
		return "dedup"
	}
	return "other"
}

func (c *counting) add(m map[string]int, key string) {
	c.mu.Lock()
	m[class(key)]++
	c.mu.Unlock()
}

func (c *counting) count(what, cl string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if what == "reads" {
		return c.reads[cl]
	}
	return c.writes[cl]
}

func (c *counting) Get(ctx context.Context, key string) (store.KV, error) {
	c.add(c.reads, key)
	return c.Store.Get(ctx, key)
}

func (c *counting) List(ctx context.Context, prefix string) ([]store.KV, store.Revision, error) {
	c.add(c.reads, prefix)
	return c.Store.List(ctx, prefix)
}

func (c *counting) Put(ctx context.Context, key string, value []byte, opts ...store.PutOption) (store.Revision, error) {
	rev, err := c.Store.Put(ctx, key, value, opts...)
	if err == nil {
		c.add(c.writes, key)
	}
	return rev, err
}

func (c *counting) Delete(ctx context.Context, key string, opts ...store.DeleteOption) (store.Revision, error) {
	rev, err := c.Store.Delete(ctx, key, opts...)
	if err == nil {
		c.add(c.writes, key)
	}
	return rev, err
}

func (c *counting) Txn(ctx context.Context, ops ...store.Op) (store.Revision, error) {
	rev, err := c.Store.Txn(ctx, ops...)
	if err == nil { // a refused create wrote nothing
		for _, op := range ops {
			c.add(c.writes, op.Key)
		}
	}
	return rev, err
}

func (c *counting) Watch(ctx context.Context, prefix string, after store.Revision) <-chan store.WatchResponse {
	in := c.Store.Watch(ctx, prefix, after)
	out := make(chan store.WatchResponse)
	go func() {
		defer close(out)
		for resp := range in {
			if len(resp.Events) > 0 {
				c.add(c.reads, prefix)
			}
			select {
			case out <- resp:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// host is one daemon: its own store client, deduper and runner.
type host struct {
	name   string
	st     store.Store // the client, for Detach
	cnt    *counting
	dd     *dedup.Deduper
	tmpl   config.Template
	cancel context.CancelFunc
	done   chan struct{}
	px     *proxy // hostOpts.proxy
	r      *runner.Runner
}

func (h *host) dest() string { return h.tmpl.Spec.Dest }

func (h *host) file() string {
	b, _ := os.ReadFile(h.dest())
	return string(b)
}

// startHost starts a daemon rendering text (with or without dedup) into
// its own directory.
func startHost(t *testing.T, url, name, text string, withDedup bool) *host {
	t.Helper()
	return startHostOn(t, url, name, dataPrefix, text, withDedup)
}

// startHostOn is startHost with the template reading prefix.
func startHostOn(t *testing.T, url, name, prefix, text string, withDedup bool) *host {
	t.Helper()
	return startHostWith(t, url, name, text, hostOpts{prefix: prefix, dedup: withDedup})
}

// hostOpts are startHostWith's.
type hostOpts struct {
	prefix    string
	dedup     bool
	peers     bool          // serve and take outputs peer to peer, on loopback
	advertise string        // with peers: the address followers are told
	grace     time.Duration // with peers: WithPeerGrace (0: a long one, so that nothing is stored for a follower slowed by the machine's load)
	proxy     bool          // with peers: followers reach the leader through a proxy that host.freeze stops
}

// startPeerHost starts a dedup daemon that serves its outputs peer to
// peer.
func startPeerHost(t *testing.T, url, name string) *host {
	t.Helper()
	return startHostWith(t, url, name, text, hostOpts{prefix: dataPrefix, dedup: true, peers: true})
}

func startHostWith(t *testing.T, url, name, text string, o hostOpts) *host {
	t.Helper()
	prefix, withDedup := o.prefix, o.dedup
	st, err := backend.Open(t.Context(), url, backend.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cnt := &counting{Store: st, reads: map[string]int{}, writes: map[string]int{}}
	dir := t.TempDir()
	src := filepath.Join(dir, "app.tmpl")
	if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := config.Template{
		Name: "app", Src: src, Origin: name + ":berth.toml:1",
		Options:  dialect.Options{Dialect: dialect.Native},
		Prefixes: []string{prefix},
		Spec:     render.Spec{Name: "app", Dest: filepath.Join(dir, "app.out")},
		Dedup:    withDedup,
	}
	dopts := []dedup.Option{dedup.WithTTL(ttl), dedup.WithHost(name), dedup.WithLogger(quiet())}
	var px *proxy
	if o.peers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		adv := o.advertise
		if o.proxy {
			px = startProxy(t, ln.Addr().String())
			adv = px.addr()
		}
		dopts = append(dopts, dedup.WithPeers(ln, adv), dedup.WithPeerGrace(cmp.Or(o.grace, 20*time.Second)))
	}
	dd := dedup.New(cnt, dopts...)
	keys, open := dd.Sources(nil, func(k string) runner.Source { return watcher.NewMirror(cnt, k, watcher.WithLogger(quiet())) })
	r := runner.New(cnt, render.New(render.WithLogger(quiet())), runner.WithLogger(quiet()), runner.WithSources(keys, open))
	ctx, cancel := context.WithCancel(t.Context())
	h := &host{name: name, st: st, cnt: cnt, dd: dd, tmpl: tmpl, cancel: cancel, done: make(chan struct{}), px: px, r: r}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := dd.Run(ctx); err != nil {
			t.Errorf("%s: dedup Run: %v", name, err)
		}
	})
	wg.Go(func() {
		if err := r.Run(ctx, []config.Template{tmpl}); err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	})
	go func() {
		defer close(h.done)
		wg.Wait()
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *host) stop() {
	h.cancel()
	<-h.done
}

// openAdmin opens a client of the store at url for the test's own reads
// and writes.
func openAdmin(t *testing.T, url string) store.Store {
	t.Helper()
	admin, err := backend.Open(t.Context(), url, backend.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return admin
}

// startHosts starts n daemons h0… with o.
func startHosts(t *testing.T, url string, n int, o hostOpts) []*host {
	t.Helper()
	var hosts []*host
	for i := range n {
		hosts = append(hosts, startHostWith(t, url, fmt.Sprintf("h%d", i), text, o))
	}
	return hosts
}

func put(t *testing.T, st store.Store, k, v string) {
	t.Helper()
	if _, err := st.Put(t.Context(), dataPrefix+k, []byte(v)); err != nil {
		t.Fatal(err)
	}
}

// waitAll waits until every host's file is want.
func waitAll(t *testing.T, want string, hosts ...*host) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for _, h := range hosts {
			ok = ok && h.file() == want
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, h := range hosts {
				t.Logf("%s: %q", h.name, h.file())
			}
			t.Fatalf("files did not converge to %q", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaderOf is the host whose deduper holds the template's lock.
func leaderOf(t *testing.T, st store.Store, hosts ...*host) *host {
	t.Helper()
	kvs, _, err := st.List(t.Context(), dedup.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if !strings.HasSuffix(kv.Key, "/leader") {
			continue
		}
		var l struct{ Owner string }
		json.Unmarshal(kv.Value, &l)
		for _, h := range hosts {
			if h.dd.Owner() == l.Owner {
				return h
			}
		}
	}
	return nil
}

func expect(kv ...string) string {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", kv[i], kv[i+1])
	}
	return b.String()
}

// TestDedupReadsDoNotGrow: three daemons render one template from one
// etcd. With dedup exactly one of them reads the data prefix and executes
// the template, every file is identical, a change costs the data prefix
// one read whatever the number of renderers, the followers never write a
// dedup key, and the leader writes one output per distinct output (no
// write loop). Without dedup the same changes cost one read per renderer.
func TestDedupReadsDoNotGrow(t *testing.T) {
	const changes = 5
	for _, tc := range []struct {
		dedup     bool
		dataReads int // of the data prefix per change, all hosts together
	}{{true, 1}, {false, 3}} {
		t.Run(fmt.Sprintf("dedup=%t", tc.dedup), func(t *testing.T) {
			url := testenv.StartEtcd(t, 1).URL()
			admin := openAdmin(t, url)
			put(t, admin, "a", "0")
			var hosts []*host
			for i := range 3 {
				hosts = append(hosts, startHost(t, url, fmt.Sprintf("h%d", i), text, tc.dedup))
			}
			waitAll(t, expect("a", "0"), hosts...)
			before := 0
			for _, h := range hosts {
				before += h.cnt.count("reads", "data")
			}
			for i := 1; i <= changes; i++ {
				put(t, admin, "a", fmt.Sprint(i))
				waitAll(t, expect("a", fmt.Sprint(i)), hosts...)
			}
			// Let any late read or write show before counting.
			time.Sleep(500 * time.Millisecond)
			after, readers := 0, 0
			for _, h := range hosts {
				n := h.cnt.count("reads", "data")
				after += n
				if n > 0 {
					readers++
				}
			}
			if got := after - before; got != tc.dataReads*changes {
				t.Errorf("data prefix reads for %d changes = %d, want %d", changes, got, tc.dataReads*changes)
			}
			if !tc.dedup {
				return
			}
			if readers != 1 {
				t.Errorf("%d hosts read the data prefix, want 1 (the leader)", readers)
			}
			leader := leaderOf(t, admin, hosts...)
			if leader == nil {
				t.Fatal("no host holds the dedup lock")
			}
			for _, h := range hosts {
				w := h.cnt.count("writes", "dedup")
				if h == leader {
					// The lock, then one output per distinct output.
					if want := 1 + changes + 1; w != want {
						t.Errorf("leader %s wrote the dedup keys %d times, want %d (lock + %d outputs)", h.name, w, want, changes+1)
					}
					continue
				}
				if w != 0 {
					t.Errorf("follower %s wrote the dedup keys %d times", h.name, w)
				}
				if n := h.cnt.count("reads", "data"); n != 0 {
					t.Errorf("follower %s read the data prefix %d times", h.name, n)
				}
			}
		})
	}
}

// TestDedupHandover: the leader dies (its store client stops renewing its
// lease, as under kill -9) and a change is made at once: another daemon
// takes the lock when the lease runs out, renders from the current data,
// and every remaining file has the change. A stopped leader (context
// ended) hands over at once.
func TestDedupHandover(t *testing.T) {
	for _, peers := range []bool{false, true} {
		t.Run(fmt.Sprintf("peers=%t", peers), func(t *testing.T) { testHandover(t, peers) })
	}
}

func testHandover(t *testing.T, peers bool) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	hosts := []*host{}
	for i := range 3 {
		hosts = append(hosts, startHostWith(t, url, fmt.Sprintf("h%d", i), text, hostOpts{prefix: dataPrefix, dedup: true, peers: peers}))
	}
	waitAll(t, expect("a", "0"), hosts...)
	rest := func(dead *host) []*host {
		var out []*host
		for _, h := range hosts {
			if h != dead {
				out = append(out, h)
			}
		}
		return out
	}

	// A crash: the lease is left to expire.
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no leader")
	}
	killed := time.Now()
	if err := leader.st.(store.Detacher).Detach(); err != nil {
		t.Fatal(err)
	}
	leader.stop()
	put(t, admin, "b", "during-handover")
	hosts = rest(leader)
	waitAll(t, expect("a", "0", "b", "during-handover"), hosts...)
	took := time.Since(killed)
	next := leaderOf(t, admin, hosts...)
	if next == nil {
		t.Fatal("no new leader")
	}
	t.Logf("crash: %s took over after %s (ttl %s)", next.name, took.Round(time.Millisecond), ttl)

	// A clean stop: the lock is deleted, the last host leads at once.
	next.stop()
	hosts = rest(next)
	put(t, admin, "c", "after-stop")
	waitAll(t, expect("a", "0", "b", "during-handover", "c", "after-stop"), hosts...)
	if l := leaderOf(t, admin, hosts...); l != hosts[0] {
		t.Fatalf("leader after a clean stop = %v, want %s", l, hosts[0].name)
	}
}

// TestDedupIgnoresAForeignOutput: an output written by anyone but the
// lock holder (a stale leader's late write, an operator's mistake) is not
// taken by the followers, and the leader stores its own over it.
func TestDedupIgnoresAForeignOutput(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	hosts := []*host{startHost(t, url, "h0", text, true), startHost(t, url, "h1", text, true)}
	want := expect("a", "0")
	waitAll(t, want, hosts...)
	kvs, _, err := admin.List(t.Context(), dedup.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var outKey string
	var rec map[string]any
	for _, kv := range kvs {
		if strings.HasSuffix(kv.Key, "/output") {
			outKey = kv.Key
			json.Unmarshal(kv.Value, &rec)
		}
	}
	if outKey == "" {
		t.Fatal("no output key")
	}
	leaderOwner := rec["owner"]
	const foreign = "a=stale\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(foreign))
	zw.Close()
	sum := sha256.Sum256([]byte(foreign))
	rec["owner"], rec["host"], rec["gzip"], rec["hash"] = "intruder", "stale", gz.Bytes(), hex.EncodeToString(sum[:])
	b, _ := json.Marshal(rec)
	if _, err := admin.Put(t.Context(), outKey, b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, h := range hosts {
			if h.file() == foreign {
				t.Fatalf("%s wrote the output of a daemon that does not hold the lock", h.name)
			}
		}
		kv, err := admin.Get(t.Context(), outKey)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		json.Unmarshal(kv.Value, &got)
		if got["owner"] == leaderOwner {
			break
		}
		time.Sleep(5 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatalf("the leader did not store its output over a foreign one: owner %v", got["owner"])
		}
	}
	// While the leader is dead but its lock not yet expired, a foreign
	// output is not taken either.
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no leader")
	}
	if err := leader.st.(store.Detacher).Detach(); err != nil {
		t.Fatal(err)
	}
	leader.stop()
	if _, err := admin.Put(t.Context(), outKey, b); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(ttl / 2); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		for _, h := range hosts {
			if h != leader && h.file() != want {
				t.Fatalf("%s = %q, want %q: it took an output of a daemon that does not hold the lock", h.name, h.file(), want)
			}
		}
	}
	if hosts[0] == leader {
		hosts = hosts[1:]
	} else {
		hosts = hosts[:1]
	}
	// An invalid record is reported and ignored as well.
	if _, err := admin.Put(t.Context(), outKey, []byte(`{"owner":"x"`)); err != nil {
		t.Fatal(err)
	}
	put(t, admin, "a", "1")
	waitAll(t, expect("a", "1"), hosts...)
}

// TestDedupSeparatesTemplates: two hosts whose templates differ in text
// never share an output; the same text at different paths does.
func TestDedupSeparatesTemplates(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	h0 := startHost(t, url, "h0", text, true)
	h1 := startHost(t, url, "h1", text, true)
	h2 := startHost(t, url, "h2", "other "+text, true)
	waitAll(t, expect("a", "0"), h0, h1)
	waitAll(t, "other "+expect("a", "0"), h2)
	kvs, _, err := admin.List(t.Context(), dedup.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, kv := range kvs {
		if strings.HasSuffix(kv.Key, "/leader") {
			leaders++
		}
	}
	if leaders != 2 {
		t.Errorf("%d dedup identities lead, want 2", leaders)
	}
}

func TestKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "a.tmpl")
	os.WriteFile(src, []byte("x"), 0o644)
	base := config.Template{Name: "a", Src: src, Origin: "berth.toml:3", Prefixes: []string{dataPrefix}, Dedup: true}
	dd := dedup.New(nil)
	for _, tc := range []struct {
		name string
		edit func(*config.Template)
		want string // "" accepted
	}{
		{"plain", func(*config.Template) {}, ""},
		{"live", func(t *config.Template) { t.Live = "nginx-lua" }, "live"},
		{"no prefixes", func(t *config.Template) { t.Prefixes = nil }, "prefixes"},
		{"covers the dedup keys", func(t *config.Template) { t.Prefixes = []string{"/berth/"} }, ""},
		{"inside the dedup keys", func(t *config.Template) { t.Prefixes = []string{"/berth/dedup/x/"} }, "its own input"},
		{"missing file", func(t *config.Template) { t.Src = filepath.Join(dir, "nope") }, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := base
			tc.edit(&tm)
			_, err := dd.Key(tm)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "berth.toml:3")):
				t.Fatalf("err = %v, want one naming berth.toml:3 and %q", err, tc.want)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	a := config.Template{Src: write("a/x.tmpl", "T"), Prefixes: []string{"/p/"}}
	id := func(t config.Template) string {
		s, err := dedup.Identity(t)
		if err != nil {
			panic(err)
		}
		return s
	}
	same := a
	same.Src = write("b/x.tmpl", "T")
	same.Spec.Dest, same.Spec.Reload = "/elsewhere", "reload"
	if id(a) != id(same) {
		t.Error("the same text at another path, with another destination, has another identity")
	}
	for name, edit := range map[string]func(*config.Template){
		"text":     func(t *config.Template) { t.Src = write("c/x.tmpl", "U") },
		"prefixes": func(t *config.Template) { t.Prefixes = []string{"/q/"} },
		"dialect":  func(t *config.Template) { t.Options.Dialect = dialect.Confd },
		"include":  func(t *config.Template) { t.Options.Includes = []string{write("inc.tmpl", "I")} },
		"missing":  func(t *config.Template) { t.Options.MissingKeyError = true },
	} {
		o := a
		edit(&o)
		if id(o) == id(a) {
			t.Errorf("a different %s has the same identity", name)
		}
	}
}

// TestDedupOverItsOwnKeys: a template whose prefix covers the dedup keys
// (the native dialect's default, /berth/, does) does not see them: the
// leader's output is not its input, so storing it triggers no render and
// no further write (consul-template's render loop).
func TestDedupOverItsOwnKeys(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	const keys = `{{ range tree "/" }}{{ .Key }}
{{ end }}`
	hosts := []*host{startHostOn(t, url, "h0", "/", keys, true), startHostOn(t, url, "h1", "/", keys, true)}
	waitAll(t, "t/data/a\ntestenv/ready\n", hosts...) // etcd's readiness probe wrote the second
	put(t, admin, "b", "0")
	waitAll(t, "t/data/a\nt/data/b\ntestenv/ready\n", hosts...)
	time.Sleep(time.Second) // a loop would show as more writes
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no leader")
	}
	if w := leader.cnt.count("writes", "dedup"); w != 3 {
		t.Errorf("the leader wrote the dedup keys %d times, want 3 (the lock, two outputs)", w)
	}
}
