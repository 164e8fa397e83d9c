package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berthd/berth/bench"
)

// TestBenchRuntime runs the benchmark briefly: the JSON has its fields
// and nothing it created is left (bridge, cgroups).
func TestBenchRuntime(t *testing.T) {
	code, stdout, stderr := berthCLI(context.Background(), "bench", "runtime", "--runs", "2", "--json", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res bench.RuntimeResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("output %q: %v", stdout, err)
	}
	if res.Runs != 2 || res.StartP50Ms <= 0 || res.StartP90Ms < res.StartP50Ms {
		t.Errorf("embedded figures: %+v", res)
	}
	if _, err := exec.LookPath("runc"); err == nil && (res.RuncP50Ms <= 0 || res.RuncDetachedP50Ms <= 0 || res.Runc == "") {
		t.Errorf("runc is installed but not measured: %+v", res)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "bbench") {
			t.Errorf("bridge %s left", l.Attrs().Name)
		}
	}
	if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil && strings.Contains(string(out), "bridge bbench") {
		t.Errorf("iptables rule left: %s", out)
	}
	left, _ := filepath.Glob("/sys/fs/cgroup/*/berth-bench-*")
	if len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	if tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), "berth-bench-runtime-*")); len(tmp) > 0 {
		t.Errorf("temp dirs left: %v", tmp)
	}
}
