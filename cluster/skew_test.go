package cluster_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needTimeNamespaces fails the test, as needTools does for a missing
// tool, when the kernel has no time namespaces (CONFIG_TIME_NS, Linux
// 5.6+) or unshare(1) cannot make one: without them one process's clock
// cannot be skewed, and a skip would let CI pass having shown nothing.
func needTimeNamespaces(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/ns/time"); err != nil {
		t.Fatalf("needs time namespaces (CONFIG_TIME_NS, Linux 5.6+): %v: cannot skew one host's clock", err)
	}
	if out, err := exec.Command("unshare", "--time", "true").CombinedOutput(); err != nil {
		t.Fatalf("unshare --time true: %v %s: cannot skew one host's clock", err, out)
	}
}

// skewArgs runs bin in a new time namespace whose CLOCK_MONOTONIC and
// CLOCK_BOOTTIME read off seconds more than the host's (unshare execs bin
// in it, so bin keeps unshare's PID: a SIGKILL by PID kills the daemon).
func skewArgs(off int64, bin string, args ...string) (string, []string) {
	o := strconv.FormatInt(off, 10)
	return "unshare", append([]string{"--time", "--monotonic=" + o, "--boottime=" + o, bin}, args...)
}

// monotonicOffset is the CLOCK_MONOTONIC offset of process pid's time
// namespace, from /proc/PID/timens_offsets.
func monotonicOffset(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timens_offsets", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "monotonic" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no monotonic line in %q", b)
}

// TestClockSkew: a member's clock skew is harmless, because a lease's
// expiry is the etcd leader's business, not its holder's. Three hosts
// form a cluster; host 0 (no skew, --cluster-init, so normally the
// leader) renders the shipped nginx templates for a real nginx; host 1's
// berth up (member, registrar, runtime and its container) runs in a time
// namespace whose monotonic and boot clocks are a day ahead, host 2's in
// one whose clocks are behind by nearly the machine's uptime (they start
// near zero). Both run a whoami container. A second case skews the
// leader instead (a day ahead; host 1 unskewed, host 2 behind), whose
// lessor then counts the TTLs on a skewed clock. Records are registered,
// routed by the other hosts (host 0's nginx over real HTTP, each other's
// rendered files), stay without a gap over several TTLs, and after a kill
// -9 of a daemon leave within TTL + 1 s, skewed as for an
// unskewed daemon (host 2 restarted without skew, the control).
//
// Why this fails if leases depended on the holder's clock: every Go timer
// and etcd's lessor run on CLOCK_MONOTONIC, the clock the namespaces
// offset. Had a client sent an absolute deadline ("my monotonic now +
// TTL") for the leader to compare with its own clock, host 1's deadline
// would lie a day in the future (its records would outlive the kill by a
// day: the TTL + 1 s bound fails) and host 2's would lie ~uptime in the
// past (its records would expire at once or flap: the no-gap check over
// several TTLs fails); with the leader a day ahead, every holder's
// deadline would lie a day in its past (the no-gap check fails). A lease in etcd carries only its TTL in seconds
// and its ID (LeaseGrantRequest, LeaseKeepAliveRequest); the holder's
// clock decides only when it sends the next keepalive, a duration, which
// an offset does not change.
//
// Wall-clock (CLOCK_REALTIME) skew cannot be shown here: the kernel has
// no realtime offset for a time namespace, setting the machine's clock
// skews every host alike (no skew between them), and Go reads the clock
// through the vDSO, out of reach of an LD_PRELOAD fake. No lease or
// record compares wall times across hosts either; the peer certificates'
// NotBefore is backdated an hour (store/etcd/pki.go) for that reason.
func TestClockSkew(t *testing.T) {
	needTools(t, "nginx", "curl", "unshare")
	needTimeNamespaces(t)
	const ttl = 3 * time.Second
	const ahead = int64(24 * 60 * 60)
	// Behind: the offset must keep the namespace's clocks ≥ 0 (the kernel
	// refuses it otherwise), so host 2's monotonic clock starts at 60 s.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	behind := -(ts.Sec - 60)
	switch {
	case behind > -600:
		// A fresh machine (CI's) has no room for a negative offset that
		// matters: the clock a day ahead is still shown.
		t.Logf("the machine is up for %ds only: too little for a negative clock offset that matters; host 2 runs unskewed", ts.Sec)
		behind = 0
	default:
		if out, err := exec.Command("unshare", "--time", fmt.Sprintf("--monotonic=%d", behind), fmt.Sprintf("--boottime=%d", behind), "true").CombinedOutput(); err != nil {
			t.Logf("the kernel refuses a negative time namespace offset %d (%v %s); host 2 runs unskewed", behind, err, out)
			behind = 0
		}
	}
	for _, tc := range []struct {
		name string
		off  [3]int64 // clock offsets in seconds of hosts 0 (the leader), 1, 2
	}{
		{"members skewed", [3]int64{0, ahead, behind}},
		{"leader skewed", [3]int64{ahead, 0, behind}},
	} {
		t.Run(tc.name, func(t *testing.T) { testSkew(t, ttl, tc.off) })
	}
}

// testSkew is TestClockSkew on three hosts whose clocks are offset by off
// seconds; host 0 starts the cluster, hosts 1 and 2 run a container each.
func testSkew(t *testing.T, ttl time.Duration, off [3]int64) {
	h := newHosts(t, 3)
	name := func(i int) string { return fmt.Sprintf("host%d", i) }
	list := func(i int) string { return filepath.Join(h.state(i), "list.txt") }
	tmpl := filepath.Join(t.TempDir(), "list.tmpl")
	if err := os.WriteFile(tmpl, []byte(listing), 0o644); err != nil {
		t.Fatal(err)
	}
	common := func(i int, extra ...string) []string {
		return append([]string{"up", "--state-dir", h.state(i), "--hostname", name(i), "--advertise", hostIP(i),
			"--ttl", ttl.String(), "--log-level", "info"}, extra...)
	}
	// Host 0 renders for nginx; hosts 1 and 2 run containers. Each daemon
	// runs with its clock offset (0: none).
	ngx, conf, dest := h.nginxConfig(0)
	sock := func(i int) string { return filepath.Join(h.state(i), "berth.sock") }
	runner := func(i int, extra ...string) []string {
		return common(i, append([]string{"--runtime", "embedded", "--socket", sock(i), "--cgroup-parent", h.cgroupParent(i),
			"--rm", "--template", tmpl + ":" + list(i)}, extra...)...)
	}
	up := func(i int, o int64, extra ...string) *daemonProc {
		t.Helper()
		bin, args, env := h.bin, runner(i, extra...), []string(nil)
		if i == 0 {
			args = common(0, append([]string{"--runtime", "none", "--config", conf}, extra...)...)
			env = []string{"BERTH_NGINX_LISTEN=127.0.0.1:8000"}
		}
		if o != 0 {
			bin, args = skewArgs(o, bin, args...)
		}
		p := h.start(i, h.names[i], env, bin, args...)
		pid := p.cmd.Process.Pid
		eventually(t, 10*time.Second, fmt.Sprintf("host %d's daemon runs with a monotonic offset of %ds", i, o), func() (bool, string) {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			got, err := monotonicOffset(pid)
			return exe == h.bin && err == nil && got == o, fmt.Sprintf("exe %s, offset %d, %v", exe, got, err)
		})
		return p
	}
	up(0, off[0], "--cluster-init")
	h.started(0, 1, 30*time.Second)
	token := strings.TrimSpace(h.mustBerth(0, "cluster", "token", "--state-dir", h.state(0)))
	join := []string{"--join", "https://" + hostIP(0) + ":2380", "--token", token}
	p1 := up(1, off[1], join...)
	h.started(0, 2, 30*time.Second)
	p2 := up(2, off[2], join...)
	h.started(0, 3, 30*time.Second)
	// leader names the member that leads, whose lessor expires leases.
	leader := func() string {
		ms, err := h.members(0)
		if err != nil {
			return err.Error()
		}
		for _, m := range ms {
			if m.Leader {
				return m.Name
			}
		}
		return "none"
	}
	t.Logf("clock offsets of hosts 0, 1, 2: %v s; leader: %s", off, leader())
	h.startNginx(0, ngx, dest)

	whoami := buildWhoami(t)
	ids := map[int]string{}
	for _, i := range []int{1, 2} {
		h.importWhoami(i, sock(i), whoami)
		ids[i] = h.runWhoami(i, sock(i), fmt.Sprintf("w%d", i), fmt.Sprintf("whoami%d.test", i), 8080)
	}
	upstream := func(i int) string { return fmt.Sprintf("server %s:8080;", hostIP(i)) }
	record := func(i int) string { return fmt.Sprintf("%s %s:8080", name(i), hostIP(i)) }
	other := map[int]int{1: 2, 2: 1}
	// routed: host i's instance is in host 0's nginx.conf and the other
	// container host's rendered file.
	routed := func(i int) (bool, string) {
		conf, _ := os.ReadFile(dest)
		l, _ := os.ReadFile(list(other[i]))
		return strings.Contains(string(conf), upstream(i)) && strings.Contains(string(l), record(i)),
			fmt.Sprintf("nginx.conf:\n%s\nhost %d's list:\n%s", conf, other[i], l)
	}
	gone := func(i int) func() (bool, string) {
		return func() (bool, string) {
			conf, _ := os.ReadFile(dest)
			l, _ := os.ReadFile(list(other[i]))
			return !strings.Contains(string(conf), fmt.Sprintf("%s:8080", hostIP(i))) && !strings.Contains(string(l), record(i)),
				fmt.Sprintf("nginx.conf:\n%s\nhost %d's list:\n%s", conf, other[i], l)
		}
	}
	curl := func(i int) func() (bool, string) {
		return func() (bool, string) {
			out, err := h.run(0, "curl", "-s", "-m", "2", "-H", fmt.Sprintf("Host: whoami%d.test", i), "http://127.0.0.1:8000/")
			return err == nil && strings.Contains(out, ids[i][:12]), out
		}
	}
	for _, i := range []int{1, 2} {
		eventually(t, 15*time.Second, fmt.Sprintf("host %d's instance is routed by the other hosts", i), func() (bool, string) { return routed(i) })
		eventually(t, 15*time.Second, fmt.Sprintf("host 0's nginx serves host %d's container", i), curl(i))
	}

	// Both hosts' records stay, without a gap, for 4 TTLs (a lease
	// held on a broken clock would have expired or flapped by then).
	stay := 4 * ttl
	for start := time.Now(); time.Since(start) < stay; time.Sleep(100 * time.Millisecond) {
		for _, i := range []int{1, 2} {
			if ok, state := routed(i); !ok {
				t.Fatalf("host %d's instance (clock offset %ds) left the others' files %s into %s of keepalives:\n%s",
					i, off[i], time.Since(start).Round(time.Millisecond), stay, state)
			}
		}
	}
	for _, i := range []int{1, 2} {
		if ok, out := curl(i)(); !ok {
			t.Fatalf("after %s host 0's nginx no longer serves host %d's container: %s", stay, i, out)
		}
	}
	t.Logf("hosts 1's and 2's instances stayed routed for %s (TTL %s)", stay, ttl)

	// kill -9 of a daemon: its records leave with its lease, within the
	// TTL + 1 s, skewed or not. The leader must have quorum for a lease to
	// expire, so one member is down at a time.
	within := ttl + time.Second
	killed := func(i int, p *daemonProc, o int64) {
		t.Helper()
		lead := leader()
		p.kill(t)
		what := fmt.Sprintf("clock offset %ds, leader %s", o, lead)
		took := eventually(t, within, fmt.Sprintf("host %d's instance (%s) leaves the others' files after kill -9", i, what), gone(i))
		t.Logf("host %d's instance (%s) left the others' files %s after its daemon's kill -9 (TTL %s)", i, what, took.Round(time.Millisecond), ttl)
	}
	killed(1, p1, off[1])
	up(1, off[1])
	h.started(0, 3, 30*time.Second)
	eventually(t, 30*time.Second, "host 1's instance is routed again after its restart", func() (bool, string) { return routed(1) })
	killed(2, p2, off[2])
	// The control: host 2 without skew. It runs a new container: the old
	// one is not re-attached, because /proc/PID/stat shows a process's
	// start time in the reader's boot clock, so libcontainer, which
	// identifies its container's init by PID and start time, takes it for
	// gone once the daemon's boot clock offset differs from the one the
	// container started under.
	p2 = up(2, 0)
	h.started(0, 3, 30*time.Second)
	ids[2] = h.runWhoami(2, sock(2), "w2b", "whoami2.test", 8080)
	eventually(t, 30*time.Second, "host 2 (no skew) is routed again after its restart", func() (bool, string) { return routed(2) })
	killed(2, p2, 0)
}
