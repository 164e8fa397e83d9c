package embeddedtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	// Test binaries that start containers are their init process too.
	_ "github.com/berthd/berth/runtime/embedded/containerinit"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/runtime/embedded/owner"
)

// Main is a TestMain for packages that start containers: it builds the
// shared fixtures, runs the tests and removes the fixtures. (Importing
// this package makes the test binary a container init when libcontainer
// re-executes it.)
func Main(m *testing.M, fx **Fixtures) {
	dir, err := os.MkdirTemp("", "berth-fixtures-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f, err := BuildFixtures(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fixtures:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	*fx = f
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Fixtures are built once per test binary.
type Fixtures struct {
	Busybox string // rootfs dir: busybox-static, its applets, /etc/passwd
	Web     string // rootfs dir: Busybox plus /srv/web (the HTTP server)
	WebBin  string // the static HTTP server binary
}

// webSource is the test HTTP server: it answers "hello from <hostname>"
// on $PORT (default 8080), and /env with its environment.
const webSource = `package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	h, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "hello from %s\n", h) })
	http.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, strings.Join(os.Environ(), "\n")) })
	fmt.Println("listening on", port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// BuildFixtures builds the busybox and web root filesystems under dir.
func BuildFixtures(dir string) (*Fixtures, error) {
	f := &Fixtures{Busybox: filepath.Join(dir, "busybox"), Web: filepath.Join(dir, "web")}
	for _, root := range []string{f.Busybox, f.Web} {
		if err := BusyboxRootfs(root); err != nil {
			return nil, err
		}
	}
	src := filepath.Join(dir, "websrc")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(webSource), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module web\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	f.WebBin = filepath.Join(dir, "web-server")
	cmd := exec.Command("go", "build", "-trimpath", "-o", f.WebBin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build web server: %w\n%s", err, out)
	}
	if err := os.MkdirAll(filepath.Join(f.Web, "srv"), 0o755); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(f.WebBin)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.Web, "srv", "web"), b, 0o755); err != nil {
		return nil, err
	}
	return f, nil
}

// BusyboxRootfs makes a minimal busybox root filesystem in root.
func BusyboxRootfs(root string) error { return embedded.BusyboxRootfs(root) }

// Env is one test's private runtime set-up.
type Env struct {
	StateDir     string
	Bridge       string
	Subnet       netip.Prefix
	CgroupParent string
	Extra        []embedded.Option // more options for embedded.New
}

// NewEnv picks a unique bridge name, subnet (inside 10.240.0.0/12) and
// cgroup parent for one test, and a state dir under t.TempDir().
func NewEnv(t testing.TB) Env {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	n, _ := rand.Int(rand.Reader, big.NewInt(4096))
	x := int(n.Int64())
	return Env{
		StateDir:     t.TempDir(),
		Bridge:       "bt" + hex.EncodeToString(b)[:8],
		Subnet:       netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(240 + x>>8), byte(x & 0xff), 0}), 24),
		CgroupParent: "berth-test-" + hex.EncodeToString(b),
	}
}

// Options are the embedded.New options for e.
func (e Env) Options() []embedded.Option {
	return append([]embedded.Option{
		embedded.WithStateDir(e.StateDir), embedded.WithBridge(e.Bridge, e.Subnet),
		embedded.WithCgroupParent(e.CgroupParent),
	}, e.Extra...)
}

// With is e with more options for embedded.New.
func (e Env) With(opts ...embedded.Option) Env {
	e.Extra = append(slices.Clone(e.Extra), opts...)
	return e
}

// NewRuntime starts a runtime on e. Cleanup removes every container,
// closes the runtime, deletes the bridge and asserts nothing is left.
func NewRuntime(t testing.TB, e Env) *embedded.Runtime {
	t.Helper()
	r, err := embedded.New(context.Background(), e.Options()...)
	if err != nil {
		t.Fatalf("embedded.New: %v", err)
	}
	t.Cleanup(func() {
		RemoveAll(t, r)
		_ = r.Close()
		// Everything but the bridge itself must be gone by now.
		for _, l := range Leftovers(e) {
			if l != "bridge "+e.Bridge && l != "iptables rule for "+e.Bridge {
				t.Errorf("left behind on the host: %s", l)
			}
		}
		_ = r.Network().RemoveBridge()
		AssertClean(t, e)
	})
	return r
}

// CleanupEnv is for tests that open and close runtimes on e themselves
// (embedded.New): it registers a cleanup that, once they are closed,
// opens a runtime on e, removes every container, closes it, deletes the
// bridge and asserts nothing is left. Call it before opening them, so
// that their closing cleanups run first.
func CleanupEnv(t testing.TB, e Env) {
	t.Helper()
	t.Cleanup(func() {
		r, err := embedded.New(context.Background(), e.Options()...)
		if err != nil {
			t.Errorf("cleanup: open %s: %v", e.StateDir, err)
			return
		}
		RemoveAll(t, r)
		_ = r.Close()
		_ = r.Network().RemoveBridge()
		AssertClean(t, e)
	})
}

// RemoveAll force-removes every container of r.
func RemoveAll(t testing.TB, r *embedded.Runtime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, _ := r.List(ctx)
	for _, c := range cs {
		if err := r.Remove(ctx, c.ID, runtime.Force()); err != nil {
			t.Errorf("cleanup: remove %s: %v", c.Name, err)
		}
	}
}

// RemoveBridge deletes e's bridge and its forwarding rule, as a stopped
// daemon leaves them.
func RemoveBridge(e Env) error {
	mark, err := owner.Mark(e.StateDir)
	if err != nil {
		return err
	}
	return network.RemoveBridge(e.Bridge, mark)
}

// Leftovers lists what of e still exists on the host: mounts under the
// state dir, cgroups under the daemon's root in the parent (and the
// parent itself when it is empty), netns and veths carrying the daemon's
// mark (or named after the bridge, as an older berth named them), its
// forwarding rule, the bridge itself and what is attached to it.
func Leftovers(e Env) []string {
	mark, _ := owner.Mark(e.StateDir)
	var left []string
	if b, err := os.ReadFile("/proc/thread-self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], e.StateDir) {
				left = append(left, "mount "+f[4])
			}
		}
	}
	cgroupRoots := []string{"/sys/fs/cgroup"}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ents {
		cgroupRoots = append(cgroupRoots, filepath.Join("/sys/fs/cgroup", c.Name()))
	}
	for _, root := range cgroupRoots {
		ctl := strings.TrimPrefix(strings.TrimPrefix(root, "/sys/fs/cgroup"), "/")
		if ctl != "" {
			ctl += "/"
		}
		parent := filepath.Join(root, e.CgroupParent)
		if mark != "" {
			if _, err := os.Stat(filepath.Join(parent, mark)); err == nil {
				left = append(left, "cgroup "+ctl+e.CgroupParent+"/"+mark)
				subs, _ := os.ReadDir(filepath.Join(parent, mark))
				for _, s := range subs {
					if s.IsDir() {
						left = append(left, "cgroup "+ctl+e.CgroupParent+"/"+mark+"/"+s.Name())
					}
				}
			}
		}
		if subs, err := os.ReadDir(parent); err == nil && !slices.ContainsFunc(subs, os.DirEntry.IsDir) {
			left = append(left, "cgroup "+ctl+e.CgroupParent)
		}
	}
	nss, _ := os.ReadDir(network.NetnsDir)
	for _, ns := range nss {
		if mark != "" && strings.HasPrefix(ns.Name(), "berth-"+mark+"-") || strings.HasPrefix(ns.Name(), e.Bridge+"-") {
			left = append(left, "netns "+ns.Name())
		}
	}
	if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil && strings.Contains(string(out), "bridge "+e.Bridge+"\"") {
		left = append(left, "iptables rule for "+e.Bridge)
	}
	br, err := netlink.LinkByName(e.Bridge)
	if err == nil {
		left = append(left, "bridge "+e.Bridge)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		m, _, tagged := owner.ParseTag(l.Attrs().Alias)
		onBridge := br != nil && l.Attrs().MasterIndex == br.Attrs().Index
		if onBridge || tagged && m == mark && l.Type() == "veth" {
			left = append(left, "veth "+l.Attrs().Name)
		}
	}
	return left
}

// ContainerLeftovers lists what of container id still exists: its
// mount, cgroups, netns, host veth, state and libcontainer directories.
func ContainerLeftovers(e Env, id string) []string {
	mark, _ := owner.Mark(e.StateDir)
	var left []string
	if b, err := os.ReadFile("/proc/thread-self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, id) {
				left = append(left, "mount "+l)
			}
		}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ents {
		for _, p := range []string{filepath.Join(e.CgroupParent, mark, id), filepath.Join(e.CgroupParent, id)} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c.Name(), p)); err == nil {
				left = append(left, "cgroup "+c.Name()+"/"+p)
			}
		}
	}
	for _, ns := range []string{"berth-" + mark + "-" + id[:12], e.Bridge + "-" + id[:12]} {
		if _, err := os.Lstat(filepath.Join(network.NetnsDir, ns)); err == nil {
			left = append(left, "netns "+ns)
		}
	}
	if mark != "" {
		if _, err := netlink.LinkByName("v" + mark[:4] + id[:10]); err == nil {
			left = append(left, "veth")
		}
	}
	for _, d := range []string{"containers", "libcontainer"} {
		if _, err := os.Stat(filepath.Join(e.StateDir, d, id)); err == nil {
			left = append(left, d+" dir")
		}
	}
	return left
}

// AssertClean fails t when anything of e is left on the host.
func AssertClean(t testing.TB, e Env) {
	t.Helper()
	if left := Leftovers(e); len(left) > 0 {
		t.Errorf("left behind on the host: %s", strings.Join(left, ", "))
	}
}

// HTTPGet fetches url, retrying for up to 15s while the server in the
// container comes up, and returns the body.
func HTTPGet(t testing.TB, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
