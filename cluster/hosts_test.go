package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/runtime/embedded/owner"
)

// hosts are simulated hosts: one network namespace each, with a veth pair
// to a bridge in a hub namespace the test creates. Their addresses exist
// only inside those namespaces. Everything goes at the test's end, even
// when it fails.
type hosts struct {
	t      *testing.T
	prefix string // of every namespace and link name
	bin    string // the berth binary
	names  []string
	mu     sync.Mutex
	procs  map[string]*daemonProc
}

// daemonProc is one berth up, in its host's namespace.
type daemonProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
	mu   *sync.Mutex
}

// subnet of the simulated hosts: host i is 10.231.0.(i+1).
const subnet = "10.231.0."

func hostIP(i int) string { return fmt.Sprintf("%s%d", subnet, i+1) }

// needRoot fails tests that cannot run: they need root (network
// namespaces) and ip(8) and nsenter(1). CI has all of them, so a missing
// one is a broken setup, not a reason to check nothing.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the hosts are network namespaces")
	}
	needTools(t, "ip", "nsenter")
}

// needTools fails the test, naming the Debian package to install
// (scripts/install-deps installs them all), when a tool it runs is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	toolPackage := map[string]string{"ip": "iproute2", "nsenter": "util-linux", "nginx": "nginx", "curl": "curl", "iptables": "iptables", "unshare": "util-linux"}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s: install %s (scripts/install-deps does)", tool, toolPackage[tool])
		}
	}
}

// buildBerth builds berth and berth-init (the embedded runtime's
// companion, next to it) for the test.
func buildBerth(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range [][2]string{{"berth", "./cmd/berth"}, {"berth-init", "./runtime/embedded/containerinit/cmd/berth-init"}} {
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", filepath.Join(dir, p[0]), p[1])
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", p[1], err, out)
		}
	}
	return filepath.Join(dir, "berth")
}

func newHosts(t *testing.T, n int) *hosts {
	t.Helper()
	needRoot(t)
	h := &hosts{t: t, prefix: fmt.Sprintf("bc%d", os.Getpid()%100000), bin: buildBerth(t), procs: map[string]*daemonProc{}}
	t.Cleanup(h.cleanup)
	hub := h.prefix + "hub"
	h.ip("netns", "add", hub)
	h.ipIn(hub, "link", "add", "br0", "type", "bridge")
	h.ipIn(hub, "link", "set", "br0", "up")
	h.ipIn(hub, "link", "set", "lo", "up")
	for i := range n {
		ns := fmt.Sprintf("%sh%d", h.prefix, i)
		h.names = append(h.names, ns)
		h.ip("netns", "add", ns)
		outer, inner := fmt.Sprintf("%sv%d", h.prefix, i), fmt.Sprintf("%sp%d", h.prefix, i)
		h.ip("link", "add", outer, "netns", hub, "type", "veth", "peer", "name", inner, "netns", ns)
		h.ipIn(hub, "link", "set", outer, "master", "br0", "up")
		h.ipIn(ns, "link", "set", "lo", "up")
		h.ipIn(ns, "addr", "add", hostIP(i)+"/24", "dev", inner)
		h.ipIn(ns, "link", "set", inner, "up")
		if err := os.MkdirAll(h.state(i), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *hosts) ip(args ...string) {
	h.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		h.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (h *hosts) ipIn(ns string, args ...string) { h.ip(append([]string{"-n", ns}, args...)...) }

// cleanup kills every daemon still running and removes the namespaces
// (their veths and the bridge go with them).
func (h *hosts) cleanup() {
	h.mu.Lock()
	procs := h.procs
	h.mu.Unlock()
	for name, p := range procs {
		// SIGTERM first: a daemon with --rm removes its containers, nginx
		// stops its workers.
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if h.t.Failed() {
			p.mu.Lock()
			h.t.Logf("--- berth up on %s:\n%s", name, p.log.String())
			p.mu.Unlock()
		}
	}
	for i := range h.names {
		h.killCgroups(i)
	}
	// The containers' network namespaces are named in the machine's
	// /run/netns, not inside the host's: a daemon killed with -9 (or one
	// that did not remove them) leaves them there, marked with its state
	// dir's owner mark.
	for i := range h.names {
		mark, err := owner.Mark(h.state(i))
		if err != nil {
			continue
		}
		left, _ := filepath.Glob(filepath.Join(network.NetnsDir, "berth-"+mark+"-*"))
		for _, ns := range left {
			if out, err := exec.Command("ip", "netns", "del", filepath.Base(ns)).CombinedOutput(); err != nil {
				h.t.Logf("ip netns del %s: %v %s", filepath.Base(ns), err, out)
			}
		}
	}
	unmountUnder(h.root())
	for _, ns := range append(h.names, h.prefix+"hub") {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			h.t.Logf("ip netns del %s: %v %s", ns, err, out)
		}
	}
	_ = os.RemoveAll(h.root())
}

// root holds the hosts' state directories: short paths, for the unix
// sockets under them.
func (h *hosts) root() string { return filepath.Join(os.TempDir(), h.prefix) }

// state is host i's state directory.
func (h *hosts) state(i int) string { return filepath.Join(h.root(), fmt.Sprintf("h%d", i)) }

// berth runs a berth command on host i and returns its output.
func (h *hosts) berth(i int, args ...string) (string, error) {
	return h.run(i, h.bin, args...)
}

// run runs a command on host i and returns its output.
func (h *hosts) run(i int, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.names[i], bin}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustBerth is berth, failing the test on an error.
func (h *hosts) mustBerth(i int, args ...string) string {
	h.t.Helper()
	out, err := h.berth(i, args...)
	if err != nil {
		h.t.Fatalf("host %d: berth %s: %v\n%s", i, strings.Join(args, " "), err, out)
	}
	return out
}

// up starts berth up on host i; its process is the berth process itself
// (nsenter execs it), so that a SIGKILL by its PID kills the daemon. Only
// the network namespace is the host's: the mounts (cgroups) are shared.
func (h *hosts) up(i int, args ...string) *daemonProc {
	h.t.Helper()
	return h.start(i, h.names[i], nil, h.bin, append([]string{"up"}, args...)...)
}

// start starts a long-running command on host i, known as key (one at a
// time), with extra environment variables env.
func (h *hosts) start(i int, key string, env []string, bin string, args ...string) *daemonProc {
	h.t.Helper()
	h.mu.Lock()
	if p, ok := h.procs[key]; ok {
		select {
		case <-p.done:
		default:
			h.mu.Unlock()
			h.t.Fatalf("host %d: %s runs already", i, key)
		}
	}
	h.mu.Unlock()
	p := &daemonProc{done: make(chan struct{}), log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.names[i], bin}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	w := lockedWriter{p.mu, p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // Pdeathsig follows the thread that started the child
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.procs[key] = p
	h.mu.Unlock()
	return p
}

// partition drops (or, with on false, lets through again) host i's
// traffic on its link to the bridge, inside its namespace.
func (h *hosts) partition(i int, on bool) {
	h.t.Helper()
	op := "-A"
	if !on {
		op = "-D"
	}
	link := fmt.Sprintf("%sp%d", h.prefix, i)
	for _, rule := range [][]string{{"INPUT", "-i", link}, {"OUTPUT", "-o", link}} {
		args := append([]string{"netns", "exec", h.names[i], "iptables", "-w", op}, append(rule, "-j", "DROP")...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			h.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// cgroupParent is the cgroup under which host i's embedded runtime puts
// its containers.
func (h *hosts) cgroupParent(i int) string { return fmt.Sprintf("%s-h%d", h.prefix, i) }

// killCgroups kills what is left in host i's container cgroups (after a
// daemon was killed, its containers keep running) and removes them.
func (h *hosts) killCgroups(i int) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", h.cgroupParent(i)))
	if r := filepath.Join("/sys/fs/cgroup", h.cgroupParent(i)); dirExists(r) {
		roots = append(roots, r)
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for _, d := range dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		for j := len(dirs) - 1; j >= 0; j-- {
			for range 50 {
				if err := syscall.Rmdir(dirs[j]); err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// unmountUnder detaches every mount below dir (container root filesystems
// of a runtime whose daemon was killed), deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for j := len(mounts) - 1; j >= 0; j-- {
		_ = syscall.Unmount(mounts[j], syscall.MNT_DETACH)
	}
}

// Log is what the daemon printed so far.
func (p *daemonProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// kill sends SIGKILL to the daemon, by its PID, and waits for it.
func (p *daemonProc) kill(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("daemon still runs 10s after SIGKILL")
	}
}

// stop sends SIGTERM and waits.
func (p *daemonProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("daemon still runs 30s after SIGTERM")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// eventually polls cond every 100ms until it is true or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s; last: %s", what, within, last)
	return 0
}
