package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/cluster"
)

// TestClientsBeyondVoters: a host that joins a cluster with MaxVoters
// voting members becomes its client: it runs no store member, and its
// daemon and commands use the members' client ports (TLS with a client
// certificate of the cluster CA). Its writes reach the members' files and
// theirs its file, also with a member dead.
func TestClientsBeyondVoters(t *testing.T) {
	n := cluster.MaxVoters + 1
	h := newHosts(t, n)
	tmpl := filepath.Join(t.TempDir(), "list.tmpl")
	if err := os.WriteFile(tmpl, []byte(listing), 0o644); err != nil {
		t.Fatal(err)
	}
	out := func(i int) string { return filepath.Join(h.state(i), "list.txt") }
	name := func(i int) string { return fmt.Sprintf("host%d", i) }
	args := func(i int, extra ...string) []string {
		return append([]string{"--runtime", "none", "--state-dir", h.state(i), "--hostname", name(i),
			"--advertise", hostIP(i), "--template", tmpl + ":" + out(i)}, extra...)
	}
	h.up(0, args(0, "--cluster-init")...)
	h.started(0, 1, 30*time.Second)
	token := strings.TrimSpace(h.mustBerth(0, "cluster", "token", "--state-dir", h.state(0)))
	join := []string{"--join", "https://" + hostIP(0) + ":2380", "--token", token}
	procs := map[int]*daemonProc{}
	for i := 1; i < cluster.MaxVoters; i++ {
		procs[i] = h.up(i, args(i, join...)...)
		h.started(0, i+1, 60*time.Second)
	}
	client := n - 1
	p := h.up(client, args(client, join...)...)
	eventually(t, 60*time.Second, "the last host joins as a client", func() (bool, string) {
		return strings.Contains(p.Log(), "this host is its client") && strings.Contains(p.Log(), "berth daemon up"), p.Log()
	})
	if _, err := os.Stat(filepath.Join(h.state(client), "store", "data")); err == nil {
		t.Error("the client host has a store of its own")
	}
	ms, err := h.members(client)
	if err != nil || len(ms) != cluster.MaxVoters {
		t.Fatalf("berth cluster ls on the client: %v, %v; want %d members", ms, err, cluster.MaxVoters)
	}

	key, val := instance("web", name(client), "c1", hostIP(client), 8080)
	h.mustBerth(client, "kv", "put", "--state-dir", h.state(client), key, val)
	eventually(t, 10*time.Second, "host 0 renders the client's record", func() (bool, string) {
		b, _ := os.ReadFile(out(0))
		return strings.Contains(string(b), fmt.Sprintf("web %s %s:8080", name(client), hostIP(client))), string(b)
	})
	procs[1].kill(t)
	key2, val2 := instance("api", name(2), "c2", hostIP(2), 9090)
	h.mustBerth(2, "kv", "put", "--state-dir", h.state(2), key2, val2)
	eventually(t, 15*time.Second, "the client renders host 2's record with host 1 dead", func() (bool, string) {
		b, _ := os.ReadFile(out(client))
		return strings.Contains(string(b), "api host2 10.231.0.3:9090"), string(b)
	})
	key3, val3 := instance("db", name(client), "c3", hostIP(client), 5432)
	eventually(t, 15*time.Second, "a write on the client with host 1 dead", func() (bool, string) {
		o, err := h.berth(client, "kv", "put", "--state-dir", h.state(client), key3, val3)
		return err == nil, o
	})
}
