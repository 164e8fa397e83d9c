package embedded_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/runtime/embedded/owner"
)

// open starts a runtime on e that the test's cleanup closes (see
// embeddedtest.CleanupEnv for the rest).
func open(t *testing.T, e embeddedtest.Env) *embedded.Runtime {
	t.Helper()
	r, err := embedded.New(context.Background(), e.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// assertServing fails t unless container ref of r runs as pid, its
// process is alive and it answers on its address.
func assertServing(t *testing.T, r *embedded.Runtime, ref string, pid int, name string) {
	t.Helper()
	c, err := r.Inspect(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != runtime.StateRunning || c.Pid != pid {
		t.Errorf("%s: state %s pid %d, want running as pid %d", ref, c.State, c.Pid, pid)
	}
	if err := alive(pid); err != nil {
		t.Errorf("%s: process %d: %v", ref, pid, err)
	}
	if got := httpGet(t, "http://"+c.IP+":8080/"); got != "hello from "+name+"\n" {
		t.Errorf("%s answers %q", ref, got)
	}
}

// alive reports whether pid runs (a zombie, killed but not reaped, does
// not).
func alive(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err
	}
	_, after, _ := strings.Cut(string(b), ") ")
	if strings.HasPrefix(after, "Z") || strings.HasPrefix(after, "X") {
		return fmt.Errorf("process %d is dead (%.1s)", pid, after)
	}
	return nil
}

// legacyCgroupProcess starts a process in /<parent>/<64 hex digits> of
// the pids hierarchy, as an older berth (or any other daemon) put a
// container there, and returns its pid.
func legacyCgroupProcess(t *testing.T, parent string) int {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	dir := filepath.Join("/sys/fs/cgroup/pids", parent, hex.EncodeToString(b))
	if _, err := os.Stat("/sys/fs/cgroup/pids"); err != nil {
		dir = filepath.Join("/sys/fs/cgroup", parent, hex.EncodeToString(b))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(dir)
		_ = os.Remove(filepath.Dir(dir))
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// TestDaemonsShareCgroupParent: two daemons with their own state dirs and
// bridges but one cgroup parent (as every daemon with the default one)
// leave each other's containers alone, at start, while running, at stop
// and at a restart; so is a process in an unmarked cgroup under the
// parent.
func TestDaemonsShareCgroupParent(t *testing.T) {
	ctx := context.Background()
	envA := embeddedtest.NewEnv(t)
	envB := embeddedtest.NewEnv(t)
	envB.CgroupParent = envA.CgroupParent
	embeddedtest.CleanupEnv(t, envA)
	embeddedtest.CleanupEnv(t, envB)
	a := open(t, envA)
	importWeb(t, a)
	web, err := a.Run(ctx, runtime.Spec{Name: "web-a", Image: "web:test", Hostname: "web-a", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	assertServing(t, a, "web-a", web.Pid, "web-a")
	cgroupA := filepath.Join("/sys/fs/cgroup/pids", envA.CgroupParent, a.Mark(), web.ID, "cgroup.procs")
	if b, err := os.ReadFile(cgroupA); err != nil || !strings.Contains(string(b), strconv.Itoa(web.Pid)) {
		t.Errorf("web-a's cgroup %s: %q, %v; want it to hold pid %d", cgroupA, b, err, web.Pid)
	}
	legacyPid := legacyCgroupProcess(t, envA.CgroupParent)

	// The second daemon starts: it looks for orphans under the parent.
	b := open(t, envB)
	if b.Mark() == a.Mark() {
		t.Fatalf("two state dirs share the mark %s", a.Mark())
	}
	assertServing(t, a, "web-a", web.Pid, "web-a")
	if err := alive(legacyPid); err != nil {
		t.Errorf("the process in an unmarked cgroup under the parent is gone: %v", err)
	}
	importWeb(t, b)
	other, err := b.Run(ctx, runtime.Spec{Name: "web-b", Image: "web:test", Hostname: "web-b", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	assertServing(t, b, "web-b", other.Pid, "web-b")

	// The second daemon restarts (its recovery runs again), then stops its
	// container, removes it and goes away with its bridge.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := open(t, envB)
	assertServing(t, b2, "web-b", other.Pid, "web-b")
	assertServing(t, a, "web-a", web.Pid, "web-a")
	if err := b2.Stop(ctx, "web-b", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b2.Remove(ctx, "web-b"); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b2.Network().RemoveBridge(); err != nil {
		t.Fatal(err)
	}
	embeddedtest.AssertClean(t, envB)
	assertServing(t, a, "web-a", web.Pid, "web-a")
	if err := alive(legacyPid); err != nil {
		t.Errorf("the process in an unmarked cgroup under the parent is gone: %v", err)
	}
	// And the first one's restart leaves what is not its own alone too.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a2 := open(t, envA)
	assertServing(t, a2, "web-a", web.Pid, "web-a")
	if err := alive(legacyPid); err != nil {
		t.Errorf("the process in an unmarked cgroup under the parent is gone: %v", err)
	}
}

// TestSecondDaemonRefused: a daemon on the state dir, bridge or subnet of
// another is refused with a message naming it, creates nothing, and the
// first daemon's container keeps running; so it is once the first daemon
// is stopped (its containers still run).
func TestSecondDaemonRefused(t *testing.T) {
	ctx := context.Background()
	envA := embeddedtest.NewEnv(t)
	embeddedtest.CleanupEnv(t, envA)
	a := open(t, envA)
	importWeb(t, a)
	web, err := a.Run(ctx, runtime.Spec{Name: "web", Image: "web:test", Hostname: "web", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.PrefixFrom(envA.Subnet.Addr().Next(), envA.Subnet.Bits())
	type attempt struct {
		name string
		env  embeddedtest.Env
		want []string
	}
	attempts := func(running string) []attempt {
		fresh := func() embeddedtest.Env { return embeddedtest.NewEnv(t) }
		sameDir, sameBridge, sameSubnet := fresh(), fresh(), fresh()
		sameDir.StateDir = envA.StateDir
		sameBridge.Bridge = envA.Bridge
		sameSubnet.Subnet = envA.Subnet
		daemonA := "the berth daemon with state dir " + envA.StateDir + " (" + running
		out := []attempt{
			{"same bridge", sameBridge, []string{"bridge " + envA.Bridge + " belongs to " + daemonA}},
			{"same subnet", sameSubnet, []string{"subnet " + envA.Subnet.String() + " overlaps address " + gw.String() + " of interface " + envA.Bridge + ", the bridge of " + daemonA}},
		}
		if running == "running" {
			out = append(out, attempt{"same state dir", sameDir, []string{"state dir " + envA.StateDir + " is in use by another berth daemon", fmt.Sprintf("pid %d", os.Getpid())}})
		}
		return out
	}
	try := func(t *testing.T, tc attempt) {
		r, err := embedded.New(ctx, tc.env.Options()...)
		if err == nil {
			r.Close()
			_ = r.Network().RemoveBridge()
			t.Fatal("the second daemon started")
		}
		if !errors.Is(err, owner.ErrInUse) {
			t.Errorf("err = %v, want owner.ErrInUse", err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("err = %q\nwant it to contain %q", err, w)
			}
		}
		if tc.env.Bridge != envA.Bridge {
			if _, err := netlink.LinkByName(tc.env.Bridge); err == nil {
				t.Errorf("the refused daemon created bridge %s", tc.env.Bridge)
				_ = netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: tc.env.Bridge}})
			}
		}
		br, err := netlink.LinkByName(envA.Bridge)
		if err != nil {
			t.Fatal(err)
		}
		if m, _, _ := owner.ParseTag(br.Attrs().Alias); m != a.Mark() {
			t.Errorf("bridge %s's ifalias is %q after the refusal, want the first daemon's mark %s", envA.Bridge, br.Attrs().Alias, a.Mark())
		}
	}
	for _, tc := range attempts("running") {
		t.Run(tc.name, func(t *testing.T) {
			try(t, tc)
			assertServing(t, a, "web", web.Pid, "web")
		})
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range attempts("not running") {
		t.Run(tc.name+" of a stopped daemon", func(t *testing.T) {
			try(t, tc)
			if err := alive(web.Pid); err != nil {
				t.Errorf("the first daemon's container is gone: %v", err)
			}
			httpGet(t, "http://"+web.IP+":8080/")
		})
	}
	// The first daemon comes back to its container (CleanupEnv removes
	// it).
	a2 := open(t, envA)
	assertServing(t, a2, "web", web.Pid, "web")
}

// TestOverlappingSubnetRefused: a subnet overlapping an address of any
// interface is refused, naming it; one next to it is accepted.
func TestOverlappingSubnetRefused(t *testing.T) {
	env := embeddedtest.NewEnv(t) // a /24 nobody else uses
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dummy := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "bd" + hex.EncodeToString(b)}} // not berth's: no mark
	if err := netlink.LinkAdd(dummy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(dummy) })
	base := env.Subnet.Addr().As4()
	at := func(last byte, bits int) netip.Prefix {
		a := base
		a[3] = last
		return netip.PrefixFrom(netip.AddrFrom4(a), bits)
	}
	addr := at(77, 28) // the interface's 10.x.y.77/28: 10.x.y.64 to .79
	if err := netlink.AddrAdd(dummy, &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(28, 32)}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		subnet netip.Prefix
		ok     bool
	}{
		{"containing it", env.Subnet, false},
		{"the same", at(64, 28), false},
		{"inside it", at(72, 30), false},
		{"next to it", at(128, 25), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := embeddedtest.NewEnv(t)
			e.Subnet = tc.subnet
			if tc.ok {
				embeddedtest.NewRuntime(t, e)
				return
			}
			r, err := embedded.New(context.Background(), e.Options()...)
			if err == nil {
				r.Close()
				_ = r.Network().RemoveBridge()
				t.Fatalf("subnet %s overlapping %s on %s accepted", tc.subnet, addr, dummy.Name)
			}
			want := fmt.Sprintf("subnet %s overlaps address %s of interface %s", tc.subnet.Masked(), addr, dummy.Name)
			if !errors.Is(err, owner.ErrInUse) || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant owner.ErrInUse containing %q", err, want)
			}
			if _, err := netlink.LinkByName(e.Bridge); err == nil {
				t.Errorf("bridge %s created for the refused subnet", e.Bridge)
				_ = netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: e.Bridge}})
			}
		})
	}
}
