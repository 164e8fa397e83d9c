package dedup_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dedup"
	"github.com/berthd/berth/internal/testenv"
)

// TestDedupPeerToPeer: three daemons that serve their outputs peer to
// peer render one template. Every file follows every change, and the
// changes cost the store nothing but the leader's data watch: the leader
// stores no output while its followers fetch each one from it, the
// followers write only their one registration, and nobody but the leader
// reads the data. On etcd and on Consul.
func TestDedupPeerToPeer(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"etcd", func(t *testing.T) string { return testenv.StartEtcd(t, 1).URL() }},
		{"consul", func(t *testing.T) string { return "consul://" + testenv.StartConsul(t).Addr }},
	} {
		t.Run(tc.name, func(t *testing.T) { testPeerToPeer(t, tc.url(t)) })
	}
}

func testPeerToPeer(t *testing.T, url string) {
	const changes = 5
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	hosts := startHosts(t, url, 3, hostOpts{prefix: dataPrefix, dedup: true, peers: true})
	waitAll(t, expect("a", "0"), hosts...)
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no host holds the dedup lock")
	}
	before := map[*host]int{}
	for _, h := range hosts {
		before[h] = h.cnt.count("writes", "dedup")
	}
	for i := 1; i <= changes; i++ {
		put(t, admin, "a", fmt.Sprint(i))
		waitAll(t, expect("a", fmt.Sprint(i)), hosts...)
	}
	// Any late write shows.
	time.Sleep(500 * time.Millisecond)
	for _, h := range hosts {
		if w := h.cnt.count("writes", "dedup") - before[h]; w != 0 {
			t.Errorf("%s wrote the dedup keys %d times during %d changes, want 0 (the followers fetch from the leader)", h.name, w, changes)
		}
		if h == leader {
			continue
		}
		if w := h.cnt.count("writes", "dedup"); w != 1 {
			t.Errorf("follower %s wrote the dedup keys %d times, want 1 (its registration)", h.name, w)
		}
		if n := h.cnt.count("reads", "data"); n != 0 {
			t.Errorf("follower %s read the data prefix %d times", h.name, n)
		}
	}
}

// TestDedupPeerFallback: followers that cannot reach the leader (its
// lock record names a port nobody listens on) take each output from the
// store, where the leader puts it after the grace, and still follow every
// change.
func TestDedupPeerFallback(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	put(t, admin, "a", "0")
	hosts := startHosts(t, url, 3, hostOpts{prefix: dataPrefix, dedup: true, peers: true, advertise: closed, grace: 200 * time.Millisecond})
	waitAll(t, expect("a", "0"), hosts...)
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no host holds the dedup lock")
	}
	before := leader.cnt.count("writes", "dedup")
	for i := 1; i <= 3; i++ {
		put(t, admin, "a", fmt.Sprint(i))
		waitAll(t, expect("a", fmt.Sprint(i)), hosts...)
	}
	if w := leader.cnt.count("writes", "dedup") - before; w < 3 {
		t.Errorf("the leader stored %d outputs for 3 changes, want 3 (its followers cannot fetch them)", w)
	}
}

// TestDedupFollowerRegistersAgain: a follower's registration that goes
// (its lease lapsed, as in a partition longer than the TTL) is written
// again, so the leader goes on storing outputs for it if it cannot fetch
// them; a follower that stops deletes it.
func TestDedupFollowerRegistersAgain(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	hosts := startHosts(t, url, 3, hostOpts{prefix: dataPrefix, dedup: true, peers: true})
	waitAll(t, expect("a", "0"), hosts...)
	registrations := func() []string {
		kvs, _, err := admin.List(t.Context(), dedup.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range kvs {
			if strings.Contains(kv.Key, "/followers/") {
				keys = append(keys, kv.Key)
			}
		}
		return keys
	}
	registered := func() int { return len(registrations()) }
	waitFor(t, "two followers registered", func() bool { return registered() == 2 })
	for _, k := range registrations() {
		if _, err := admin.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the followers registered again", func() bool { return registered() == 2 })
	put(t, admin, "a", "1")
	waitAll(t, expect("a", "1"), hosts...)
	// A follower that stops deletes its registration (its lease would
	// keep it, and the leader store outputs for it, until the TTL).
	leader := leaderOf(t, admin, hosts...)
	for _, h := range hosts {
		if h != leader {
			h.stop()
			break
		}
	}
	waitFor(t, "the stopped follower's registration gone", func() bool { return registered() == 1 })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

// TestDedupPeerSilent: the leader's connections to its followers go
// silent (packets dropped, as by a firewall's DROP: nothing is refused,
// nothing arrives). The followers' polls hang, so the leader stores each
// output for them after the grace, and they take it from the store: the
// files follow every change while the leader cannot be reached.
func TestDedupPeerSilent(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	hosts := startHosts(t, url, 3, hostOpts{prefix: dataPrefix, dedup: true, peers: true, proxy: true, grace: 200 * time.Millisecond})
	waitAll(t, expect("a", "0"), hosts...)
	leader := leaderOf(t, admin, hosts...)
	if leader == nil {
		t.Fatal("no host holds the dedup lock")
	}
	leader.px.freeze(true)
	for i := 1; i <= 3; i++ {
		put(t, admin, "a", fmt.Sprint(i))
		waitAll(t, expect("a", fmt.Sprint(i)), hosts...)
	}
	leader.px.freeze(false)
	put(t, admin, "a", "4")
	waitAll(t, expect("a", "4"), hosts...)
}

// proxy forwards TCP connections to a target; while frozen it holds what
// it reads in both directions, as a network that drops packets.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen bool
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		p.freeze(false)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, u)
			cmu.Unlock()
			wg.Go(func() { p.pipe(u, c) })
			wg.Go(func() { p.pipe(c, u) })
		}
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) freeze(on bool) {
	p.mu.Lock()
	p.frozen = on
	p.mu.Unlock()
}

func (p *proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.isFrozen() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestDedupTemplateEdited: a dedup template edited on disk has another
// identity. Its host refuses to write the old identity's output (it is
// not its template's any more), and a configuration reload (Update, as on
// SIGHUP) renders it under the new one, shared with nobody on the old
// text; the other host goes on with the old text.
func TestDedupTemplateEdited(t *testing.T) {
	url := testenv.StartEtcd(t, 1).URL()
	admin := openAdmin(t, url)
	put(t, admin, "a", "0")
	h0, h1 := startPeerHost(t, url, "h0"), startPeerHost(t, url, "h1")
	waitAll(t, expect("a", "0"), h0, h1)
	edited := "edited\n" + text
	if err := os.WriteFile(h0.tmpl.Src, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := h0.r.Update(t.Context(), []config.Template{h0.tmpl}); err != nil {
		t.Fatal(err)
	}
	put(t, admin, "a", "1")
	waitAll(t, "edited\n"+expect("a", "1"), h0)
	waitAll(t, expect("a", "1"), h1)
}
