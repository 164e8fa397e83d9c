package cluster_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/cluster"
)

// member is one row of berth cluster ls -o json.
type member = cluster.MemberInfo

func (h *hosts) members(i int) ([]member, error) {
	out, err := h.berth(i, "cluster", "ls", "-o", "json", "--state-dir", h.state(i))
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var ms []member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	return ms, nil
}

// started waits until host i sees want started members.
func (h *hosts) started(i, want int, within time.Duration) {
	h.t.Helper()
	eventually(h.t, within, fmt.Sprintf("host %d sees %d started members", i, want), func() (bool, string) {
		ms, err := h.members(i)
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, m := range ms {
			if m.Started {
				n++
			}
		}
		return n == want && len(ms) == want, fmt.Sprint(ms)
	})
}

// instance is the record of one service instance on host.
func instance(service, host, id, ip string, port int) (key, value string) {
	v, _ := json.Marshal(map[string]any{"id": id, "name": id, "service": service, "host": host, "ip": ip, "port": port, "state": "running"})
	return fmt.Sprintf("/berth/services/%s/%s/%s", service, host, id), string(v)
}

const listing = `{{range $s, $ins := .Services}}{{range $ins}}{{$s}} {{.Host}} {{.Address}}{{"\n"}}{{end}}{{end}}`

// TestThreeHostCluster runs three hosts, each a network namespace with its
// own berth up (no container runtime) and embedded store: the first
// starts the cluster, the others join it with its token; a write on one
// host reaches the others' rendered files; a member killed with SIGKILL
// leaves the other two reading and writing; a removed member joins again
// (its old data moved aside), as does one that lost its data; a store that
// served alone keeps its data when it starts the cluster; berth cluster add
// prepares a member's place. A wrong token, a wrong CA pin, a second host
// with a taken name and removing the last member are refused.
func TestThreeHostCluster(t *testing.T) {
	h := newHosts(t, 4)
	tmpl := filepath.Join(t.TempDir(), "list.tmpl")
	if err := os.WriteFile(tmpl, []byte(listing), 0o644); err != nil {
		t.Fatal(err)
	}
	out := func(i int) string { return filepath.Join(h.state(i), "list.txt") }
	name := func(i int) string { return fmt.Sprintf("host%d", i) }
	args := func(i int, extra ...string) []string {
		return append([]string{"--runtime", "none", "--state-dir", h.state(i), "--hostname", name(i),
			"--advertise", hostIP(i), "--template", tmpl + ":" + out(i), "--log-level", "info"}, extra...)
	}

	// Host 0 serves its store alone first: --cluster-init keeps its data.
	p0 := h.up(0, args(0)...)
	key0, val0 := instance("old", name(0), "c0", hostIP(0), 80)
	eventually(t, 30*time.Second, "a write on host 0's single store", func() (bool, string) {
		o, err := h.berth(0, "kv", "put", "--state-dir", h.state(0), key0, val0)
		return err == nil, o
	})
	p0.stop(t)

	start := time.Now()
	h.up(0, args(0, "--cluster-init")...)
	h.started(0, 1, 30*time.Second)
	if o, err := h.berth(0, "cluster", "remove", name(0), "--state-dir", h.state(0)); err == nil || !strings.Contains(o, "the last member cannot be removed") {
		t.Errorf("removing the last member: %v, %s; want a refusal", err, o)
	}
	token := strings.TrimSpace(h.mustBerth(0, "cluster", "token", "--state-dir", h.state(0)))
	joinURL := "https://" + hostIP(0) + ":2380"
	p1 := h.up(1, args(1, "--join", joinURL, "--token", token)...)
	h.started(0, 2, 30*time.Second)
	p2 := h.up(2, args(2, "--join", joinURL, "--token", token)...)
	h.started(0, 3, 30*time.Second)
	h.started(2, 3, 30*time.Second)
	t.Logf("3-member cluster formed in %s", time.Since(start).Round(time.Millisecond))

	// A record written on host 1 reaches every host's rendered file, as
	// does the one host 0 wrote before the cluster existed.
	key, val := instance("web", name(1), "c1", hostIP(1), 8080)
	h.mustBerth(1, "kv", "put", "--state-dir", h.state(1), key, val)
	for i := range 3 {
		eventually(t, 10*time.Second, fmt.Sprintf("host %d renders host1's record", i), func() (bool, string) {
			b, _ := os.ReadFile(out(i))
			return strings.Contains(string(b), "web host1 10.231.0.2:8080") && strings.Contains(string(b), "old host0 10.231.0.1:80"), string(b)
		})
	}

	// berth cluster add adds a member ahead of its start; the host then
	// joins through any member (here host 1) and takes that place; once
	// removed, it stops serving.
	eventually(t, 20*time.Second, "cluster add (etcd refuses it while host 2 has been up for less than 5s)", func() (bool, string) {
		o, err := h.berth(0, "cluster", "add", "https://"+hostIP(3)+":2381", "--state-dir", h.state(0))
		return err == nil && strings.Contains(o, "added member"), o
	})
	p3 := h.up(3, args(3, "--join", "https://"+hostIP(1)+":2380", "--token", token)...)
	h.started(0, 4, 30*time.Second)
	h.mustBerth(1, "cluster", "remove", name(3), "--state-dir", h.state(1))
	h.started(0, 3, 10*time.Second)
	eventually(t, 10*time.Second, "the removed host 3 says it stopped serving", func() (bool, string) {
		return strings.Contains(p3.Log(), "was this member removed from its cluster"), p3.Log()
	})
	p3.stop(t)
	if err := os.RemoveAll(h.state(3)); err != nil {
		t.Fatal(err)
	}

	// Bad input: a wrong secret, a wrong CA pin, a name that is taken.
	tok, err := cluster.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret := cluster.Token{Pin: tok.Pin, Secret: strings.Repeat("0", 64)}.String()
	wrongPin := cluster.Token{Pin: strings.Repeat("0", 64), Secret: tok.Secret}.String()
	for _, bad := range []struct {
		name  string
		args  []string
		wants string
	}{
		{"wrong secret", args(3, "--join", joinURL, "--token", wrongSecret), "wrong join token"},
		{"wrong CA", args(3, "--join", joinURL, "--token", wrongPin), "CA is not the one the token names"},
		{"malformed token", args(3, "--join", joinURL, "--token", "nope"), "bad join token"},
		{"name taken", append(args(3, "--join", joinURL, "--token", token), "--hostname", name(1)), "already exists at https://10.231.0.2:2381"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			p := h.up(3, bad.args...)
			select {
			case <-p.done:
			case <-time.After(40 * time.Second):
				p.kill(t)
				t.Fatalf("berth up --join with a %s still runs", bad.name)
			}
			if p.cmd.ProcessState.ExitCode() == 0 || !strings.Contains(p.Log(), bad.wants) {
				t.Errorf("exit %d, log:\n%s\nwant a refusal containing %q", p.cmd.ProcessState.ExitCode(), p.Log(), bad.wants)
			}
		})
	}
	h.started(0, 3, 5*time.Second)

	// SIGKILL one member: the other two keep reading and writing.
	p2.kill(t)
	killed := time.Now()
	key2, val2 := instance("api", name(0), "c2", hostIP(0), 9090)
	eventually(t, 10*time.Second, "a write on host 0 with host 2 dead", func() (bool, string) {
		o, err := h.berth(0, "kv", "put", "--state-dir", h.state(0), key2, val2)
		return err == nil, o
	})
	eventually(t, 10*time.Second, "host 1 reads it and renders it", func() (bool, string) {
		o, err := h.berth(1, "kv", "get", "--state-dir", h.state(1), key2)
		b, _ := os.ReadFile(out(1))
		return err == nil && strings.Contains(o, "9090") && strings.Contains(string(b), "api host0 10.231.0.1:9090"), o + string(b)
	})
	t.Logf("with one member killed, a write on host 0 was read and rendered on host 1 %s after the kill", time.Since(killed).Round(time.Millisecond))

	// Remove the dead member; it joins again (its old data moved aside)
	// and catches up.
	if o := h.mustBerth(0, "cluster", "remove", name(2), "--state-dir", h.state(0)); !strings.Contains(o, "removed member host2") {
		t.Fatalf("cluster remove: %s", o)
	}
	h.started(0, 2, 10*time.Second)
	if _, err := h.berth(0, "cluster", "remove", "nosuch", "--state-dir", h.state(0)); err == nil {
		t.Error("removing an unknown member succeeded")
	}
	p2 = h.up(2, args(2, "--join", joinURL, "--token", token)...)
	h.started(0, 3, 30*time.Second)
	eventually(t, 10*time.Second, "the rejoined host 2 renders what was written while it was away", func() (bool, string) {
		b, _ := os.ReadFile(out(2))
		return strings.Contains(string(b), "api host0 10.231.0.1:9090") && strings.Contains(string(b), "web host1"), string(b)
	})
	aside, _ := filepath.Glob(filepath.Join(h.state(2), "store", "data.*"))
	if len(aside) != 1 {
		t.Errorf("old data of the removed member: %v, want one data.* directory", aside)
	}

	// A member that lost its data joins again under its name, without a
	// berth cluster remove: the join service replaces its old member.
	p2.kill(t)
	if err := os.RemoveAll(filepath.Join(h.state(2), "store", "data")); err != nil {
		t.Fatal(err)
	}
	p2 = h.up(2, args(2, "--join", "https://"+hostIP(1)+":2380", "--token", token)...)
	h.started(0, 3, 30*time.Second)
	eventually(t, 10*time.Second, "host 2 renders everything again after losing its data", func() (bool, string) {
		b, _ := os.ReadFile(out(2))
		return strings.Contains(string(b), "api host0 10.231.0.1:9090") && strings.Contains(string(b), "web host1"), string(b)
	})

	// A member restarted without flags takes its place again.
	p1.stop(t)
	h.up(1, args(1)...)
	h.started(1, 3, 30*time.Second)
	key3, val3 := instance("db", name(1), "c3", hostIP(1), 5432)
	h.mustBerth(1, "kv", "put", "--state-dir", h.state(1), key3, val3)
	eventually(t, 10*time.Second, "host 2 renders the restarted host 1's write", func() (bool, string) {
		b, _ := os.ReadFile(out(2))
		return strings.Contains(string(b), "db host1 10.231.0.2:5432"), string(b)
	})
	_ = p2
}
