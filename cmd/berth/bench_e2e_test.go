package main

import (
	"encoding/json"
	"testing"

	"github.com/berthd/berth/bench"
	"github.com/berthd/berth/internal/realparts"
)

// TestBenchE2E runs the harness for a few containers: it must report every
// figure, and leave nothing behind (it removes its bridge and cgroups).
func TestBenchE2E(t *testing.T) {
	code, stdout, stderr := berthCLI(t.Context(), "bench", "e2e", "--runs", "3", "--json", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("berth bench e2e: exit %d: %s", code, stderr)
	}
	var res bench.E2EResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if res.Runs != 3 || res.UpP50Ms <= 0 || res.UpP99Ms < res.UpP50Ms || res.DownP50Ms <= 0 || res.DownP99Ms < res.DownP50Ms ||
		res.UpConfP50Ms <= 0 || res.UpConfP50Ms > res.UpP99Ms || res.NginxCheckMs <= 0 {
		t.Errorf("figures: %+v", res)
	}
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	ports, err := realparts.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
