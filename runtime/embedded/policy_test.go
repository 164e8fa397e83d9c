package embedded_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
	"github.com/berthd/berth/runtime/embedded/network"
)

func TestRestartPolicy(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importBusybox(t, r)
	ctx := context.Background()
	t.Run("on-failure:2", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c", "echo run; exit 1"},
			Restart: runtime.RestartPolicy{Name: "on-failure", MaxRetries: 2}})
		if err != nil {
			t.Fatal(err)
		}
		waitLogs(t, r, c.ID, "run\nrun\nrun\n")
		got := waitState(t, r, c.ID, runtime.StateExited)
		time.Sleep(time.Second) // a fourth run would start within 800ms
		got, _ = r.Inspect(ctx, c.ID)
		if got.State != runtime.StateExited || got.RestartCnt != 2 || got.ExitCode != 1 || logsOf(t, r, c.ID) != "run\nrun\nrun\n" {
			t.Errorf("state %s restarts %d exit %d logs %q, want exited after 2 restarts", got.State, got.RestartCnt, got.ExitCode, logsOf(t, r, c.ID))
		}
	})
	t.Run("on-failure does not restart on success", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"true"}, Restart: runtime.RestartPolicy{Name: "on-failure"}})
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, r, c.ID, runtime.StateExited)
		time.Sleep(300 * time.Millisecond)
		if got, _ := r.Inspect(ctx, c.ID); got.RestartCnt != 0 || got.State != runtime.StateExited {
			t.Errorf("state %s restarts %d", got.State, got.RestartCnt)
		}
	})
	t.Run("always until stopped", func(t *testing.T) {
		c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test", Cmd: []string{"sh", "-c", "echo run; sleep 0.2"}, Restart: runtime.RestartPolicy{Name: "always"}})
		if err != nil {
			t.Fatal(err)
		}
		waitLogs(t, r, c.ID, "run\nrun\nrun\n")
		if err := r.Stop(ctx, c.ID, time.Second); err != nil {
			t.Fatal(err)
		}
		n := len(logsOf(t, r, c.ID))
		time.Sleep(time.Second)
		got, _ := r.Inspect(ctx, c.ID)
		if got.State != runtime.StateExited || len(logsOf(t, r, c.ID)) != n {
			t.Errorf("after stop: state %s and it kept running", got.State)
		}
	})
}

func TestHealthAndEvents(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importBusybox(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, errc := r.Events(ctx)
	c, err := r.Run(ctx, runtime.Spec{Image: "busybox:test",
		Cmd:    []string{"sh", "-c", "sleep 0.5; touch /tmp/ok; sleep 1.5; rm /tmp/ok; sleep 1000"},
		Health: &runtime.HealthCheck{Cmd: []string{"test", "-f", "/tmp/ok"}, Interval: 100 * time.Millisecond, Timeout: time.Second, Retries: 2, StartPeriod: 1500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Health != runtime.HealthStarting {
		t.Errorf("health at start %q, want starting", c.Health)
	}
	var seen []string
	deadline := time.After(20 * time.Second)
	for !slices.Contains(seen, "destroy") {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events closed: %v; seen %v", <-errc, seen)
			}
			if ev.Container.ID != c.ID {
				continue
			}
			s := string(ev.Type)
			if ev.Type == runtime.EventHealthStatus {
				s += ":" + string(ev.Container.Health)
				if ev.Container.Health == runtime.HealthUnhealthy {
					if err := r.Remove(ctx, c.ID, runtime.Force()); err != nil {
						t.Fatal(err)
					}
				}
			}
			seen = append(seen, s)
		case <-deadline:
			t.Fatalf("timed out; events so far %v", seen)
		}
	}
	want := []string{"create", "start", "health_status:healthy", "health_status:unhealthy", "die", "destroy"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", seen, want)
	}
}

// TestDaemonRestart: containers outlive the runtime that started them; a
// new runtime re-attaches, keeps serving, stops and removes them, and
// clears orphans left on the host.
func TestDaemonRestart(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	embeddedtest.CleanupEnv(t, env) // even when the test stops half-way
	ctx := context.Background()
	first, err := embedded.New(ctx, env.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Close() })
	importWeb(t, first)
	web, err := first.Run(ctx, runtime.Spec{Name: "web", Image: "web:test", Hostname: "web", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	// Docker's rules on daemon start: "always" comes back even after a
	// manual stop, "unless-stopped" does not.
	for _, p := range []string{"always", "unless-stopped"} {
		if _, err := first.Run(ctx, runtime.Spec{Name: p, Image: "web:test", Cmd: []string{"sleep", "1000"}, Restart: runtime.RestartPolicy{Name: p}}); err != nil {
			t.Fatal(err)
		}
		if err := first.Stop(ctx, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Two that end while no runtime watches: the exit status of one is
	// lost; the other is OOM-killed, which its memory cgroup tells.
	lost, err := first.Run(ctx, runtime.Spec{Name: "lost", Image: "web:test", Cmd: []string{"sh", "-c", "sleep 0.3; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	oom, err := first.Run(ctx, runtime.Spec{Name: "oom", Image: "web:test", Memory: 32 << 20,
		Cmd: []string{"sh", "-c", "sleep 0.3; x=a; while true; do x=$x$x; done"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	httpGet(t, "http://"+web.IP+":8080/")
	for _, pid := range []int{lost.Pid, oom.Pid} {
		deadline := time.Now().Add(20 * time.Second)
		for unix.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still runs", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Orphans a crash could leave: a netns, a cgroup, a mounted rootfs of
	// a container without a record, all marked as this daemon's.
	orphanID := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	mark := first.Mark()
	orphanNetns := "berth-" + mark + "-" + orphanID[:12]
	if out, err := exec.Command("ip", "netns", "add", orphanNetns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", orphanNetns).Run() })
	orphanCgroup := filepath.Join(env.CgroupParent, mark, orphanID)
	if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup/pids", orphanCgroup), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(filepath.Join("/sys/fs/cgroup/pids", orphanCgroup)) })
	// A marked veth of the orphan (removed), and another daemon's netns and
	// veth (left alone).
	orphanVeth := "v" + mark[:4] + orphanID[:10]
	foreignNetns := "berth-0badc0de-" + orphanID[:12]
	foreignVeth := "v0badc" + orphanID[:9]
	for _, v := range []struct{ name, alias string }{{orphanVeth, "berth " + mark + " " + orphanID}, {foreignVeth, "berth 0badc0de " + orphanID}} {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v.name}, PeerName: "p" + v.name[1:]}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(veth) })
		if err := netlink.LinkSetAlias(veth, v.alias); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", foreignNetns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", foreignNetns).Run() })
	orphanRoot := filepath.Join(env.StateDir, "containers", orphanID, "rootfs")
	if err := os.MkdirAll(orphanRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", orphanRoot, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}

	second := embeddedtest.NewRuntime(t, env)
	got, err := second.Inspect(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runtime.StateRunning || got.Pid != web.Pid {
		t.Fatalf("after re-attach: state %s pid %d, want running pid %d", got.State, got.Pid, web.Pid)
	}
	for name, want := range map[string]runtime.State{"always": runtime.StateRunning, "unless-stopped": runtime.StateExited} {
		if got, _ := second.Inspect(ctx, name); got.State != want {
			t.Errorf("%s after daemon restart: %s, want %s", name, got.State, want)
		}
	}
	for _, tc := range []struct {
		name string
		code int
		oom  bool
	}{{"lost", 255, false}, {"oom", 137, true}} {
		got, _ := second.Inspect(ctx, tc.name)
		if got.State != runtime.StateExited || got.ExitCode != tc.code || got.OOMKilled != tc.oom || !strings.Contains(got.Error, "no berth daemon was watching") {
			t.Errorf("%s, ended while no runtime watched: %s exit %d oom %v error %q; want exited %d oom %v with the reason",
				tc.name, got.State, got.ExitCode, got.OOMKilled, got.Error, tc.code, tc.oom)
		}
	}
	if body := httpGet(t, "http://"+web.IP+":8080/"); body != "hello from web\n" {
		t.Errorf("GET after re-attach: %q", body)
	}
	if _, err := netlink.LinkByName(orphanVeth); err == nil {
		t.Errorf("orphan veth %s not cleaned up", orphanVeth)
	}
	if _, err := netlink.LinkByName(foreignVeth); err != nil {
		t.Errorf("another daemon's veth %s is gone: %v", foreignVeth, err)
	}
	if _, err := os.Lstat(filepath.Join(network.NetnsDir, foreignNetns)); err != nil {
		t.Errorf("another daemon's netns %s is gone: %v", foreignNetns, err)
	}
	for _, l := range embeddedtest.Leftovers(env) {
		if l == "netns "+orphanNetns || l == "cgroup pids/"+orphanCgroup {
			t.Errorf("orphan not cleaned up: %s", l)
		}
	}
	if _, err := os.Stat(filepath.Dir(orphanRoot)); !os.IsNotExist(err) {
		t.Errorf("orphan container dir still there: %v", err)
	}
	other, err := second.Run(ctx, runtime.Spec{Image: "web:test", Cmd: []string{"/srv/web"}})
	if err != nil {
		t.Fatal(err)
	}
	if other.IP == web.IP {
		t.Errorf("a new container got the re-attached container's address %s", web.IP)
	}
	if err := second.Stop(ctx, "web", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, _ := second.Inspect(ctx, "web"); got.State != runtime.StateExited {
		t.Errorf("web after stop: %s", got.State)
	}
	// sleep as pid 1 ignores SIGTERM: without grace berth kills it, and the
	// exit code is known even though the first runtime started it.
	if err := second.Stop(ctx, "always", 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := second.Inspect(ctx, "always"); got.State != runtime.StateExited || got.ExitCode != 137 || got.Error != "" {
		t.Errorf("after stop: %s, exit %d, error %q; want exited 137 (killed by berth)", got.State, got.ExitCode, got.Error)
	}
}
