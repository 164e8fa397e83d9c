package cluster_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dedupLeader is the host name in the dedup lock, as host i sees it ("":
// none).
func (h *hosts) dedupLeader(i int) (string, error) {
	d, err := h.dedup(i)
	return d.leader, err
}

// dedupKeys is what the dedup keys say: who leads, the URL it serves its
// outputs at, and the followers registered to fetch them from it.
type dedupKeys struct {
	leader, url string
	followers   int
}

// dedup reads the dedup keys through host i.
func (h *hosts) dedup(i int) (dedupKeys, error) {
	var d dedupKeys
	out, err := h.berth(i, "kv", "ls", "-o", "json", "--state-dir", h.state(i), "/berth/dedup/")
	if err != nil {
		return d, fmt.Errorf("%v: %s", err, out)
	}
	var ls struct{ Keys []struct{ Key, Value string } }
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		return d, fmt.Errorf("%v: %s", err, out)
	}
	for _, kv := range ls.Keys {
		var l struct{ Host, URL string }
		if strings.HasSuffix(kv.Key, "/leader") && json.Unmarshal([]byte(kv.Value), &l) == nil {
			d.leader, d.url = l.Host, l.URL
		}
		if strings.Contains(kv.Key, "/followers/") {
			d.followers++
		}
	}
	return d, nil
}

// TestDedupAcrossHosts: three hosts of one cluster (network namespaces,
// each its own berth up and embedded member) render one template with
// dedup = true: one leads, every file is the same. kill -9 of the
// leader's daemon (its member dies with it): another host takes over
// within the TTL, and a record written right after the kill is in every
// remaining host's file (no update lost on handover). The followers take
// the outputs from the leader peer to peer, at its advertise address.
func TestDedupAcrossHosts(t *testing.T) {
	h := newHosts(t, 3)
	const ttl = 3 * time.Second
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "list.tmpl")
	if err := os.WriteFile(tmpl, []byte(listing), 0o644); err != nil {
		t.Fatal(err)
	}
	out := func(i int) string { return filepath.Join(h.state(i), "list.txt") }
	name := func(i int) string { return fmt.Sprintf("host%d", i) }
	conf := func(i int) string {
		p := filepath.Join(dir, fmt.Sprintf("berth%d.toml", i))
		toml := fmt.Sprintf("[[template]]\nname = \"list\"\nsrc = %q\ndest = %q\ndedup = true\n", tmpl, out(i))
		if err := os.WriteFile(p, []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := func(i int, extra ...string) []string {
		return append([]string{"--runtime", "none", "--state-dir", h.state(i), "--hostname", name(i),
			"--advertise", hostIP(i), "--config", conf(i), "--ttl", ttl.String(), "--log-level", "info"}, extra...)
	}
	procs := []*daemonProc{h.up(0, args(0, "--cluster-init")...)}
	h.started(0, 1, 30*time.Second)
	token := strings.TrimSpace(h.mustBerth(0, "cluster", "token", "--state-dir", h.state(0)))
	for i := 1; i < 3; i++ {
		procs = append(procs, h.up(i, args(i, "--join", "https://"+hostIP(0)+":2380", "--token", token)...))
		h.started(0, i+1, 30*time.Second)
	}
	key, val := instance("web", name(1), "c1", hostIP(1), 8080)
	h.mustBerth(1, "kv", "put", "--state-dir", h.state(1), key, val)
	want := "web host1 10.231.0.2:8080\n"
	converge := func(what string, hosts []int, want string) {
		t.Helper()
		for _, i := range hosts {
			eventually(t, 30*time.Second, fmt.Sprintf("%s: host %d", what, i), func() (bool, string) {
				b, _ := os.ReadFile(out(i))
				return string(b) == want, string(b)
			})
		}
	}
	converge("first render", []int{0, 1, 2}, want)
	var leader string
	eventually(t, 10*time.Second, "a dedup leader", func() (bool, string) {
		l, err := h.dedupLeader(0)
		leader = l
		return err == nil && l != "", fmt.Sprint(l, err)
	})
	var dead int
	fmt.Sscanf(leader, "host%d", &dead)
	// The followers fetch the outputs from the leader peer to peer, at its
	// advertise address.
	eventually(t, 10*time.Second, "the followers registered with the leader", func() (bool, string) {
		d, err := h.dedup(0)
		return err == nil && strings.HasPrefix(d.url, "https://"+hostIP(dead)+":") && d.followers == 2, fmt.Sprintf("%+v %v", d, err)
	})
	var rest []int
	for i := range 3 {
		if i != dead {
			rest = append(rest, i)
		}
	}
	for _, i := range rest {
		if log := procs[i].Log(); strings.Contains(log, "dedup: leading") {
			t.Errorf("host %d logs that it leads, but %s holds the lock:\n%s", i, leader, log)
		}
	}

	procs[dead].kill(t)
	killed := time.Now()
	key2, val2 := instance("api", name(rest[0]), "c2", hostIP(rest[0]), 9000)
	eventually(t, 20*time.Second, "a write right after the kill", func() (bool, string) {
		o, err := h.berth(rest[0], "kv", "put", "--state-dir", h.state(rest[0]), key2, val2)
		return err == nil, o
	})
	want2 := fmt.Sprintf("api host%d %s:9000\n", rest[0], hostIP(rest[0])) + want
	converge("after the leader's kill", rest, want2)
	took := time.Since(killed)
	next := ""
	eventually(t, 10*time.Second, "a new dedup leader", func() (bool, string) {
		l, err := h.dedupLeader(rest[0])
		next = l
		return err == nil && l != "" && l != leader, fmt.Sprint(l, err)
	})
	t.Logf("leader %s killed; %s took over, files current after %s (ttl %s)", leader, next, took.Round(time.Millisecond), ttl)

	// The killed host comes back (no stale lock keeps it or the others
	// waiting) and follows.
	procs[dead] = h.up(dead, args(dead)...)
	h.started(rest[0], 3, 60*time.Second)
	converge("the restarted host", []int{dead}, want2)

	// The leader is partitioned for longer than the TTL while a record is
	// written elsewhere: another host takes over; after the heal the old
	// leader follows and its file is current.
	var nl int
	fmt.Sscanf(next, "host%d", &nl)
	var others []int
	for i := range 3 {
		if i != nl {
			others = append(others, i)
		}
	}
	h.partition(nl, true)
	key3, val3 := instance("db", name(others[0]), "c3", hostIP(others[0]), 5432)
	eventually(t, 20*time.Second, "a write during the partition", func() (bool, string) {
		o, err := h.berth(others[0], "kv", "put", "--state-dir", h.state(others[0]), key3, val3)
		return err == nil, o
	})
	want3 := want2[:strings.Index(want2, "web ")] + fmt.Sprintf("db host%d %s:5432\n", others[0], hostIP(others[0])) + want
	converge("during the partition", others, want3)
	time.Sleep(ttl + time.Second)
	h.partition(nl, false)
	healed := time.Now()
	converge("after the heal", []int{nl}, want3)
	t.Logf("%s partitioned past the ttl; its file current %s after the heal", next, time.Since(healed).Round(time.Millisecond))
	eventually(t, 20*time.Second, "the lock with a host of the majority", func() (bool, string) {
		l, err := h.dedupLeader(others[0])
		return err == nil && l != "" && l != next, fmt.Sprint(l, err)
	})
}
