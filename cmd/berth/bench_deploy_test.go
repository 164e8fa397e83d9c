package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/bench"
)

// TestBenchDeploy is the proof of berth deploy: real nginx (the shipped
// templates), real containers (embedded runtime), the deploy service
// behind the daemon API, and a continuous load through nginx on
// keep-alive and new connections while v1 (3 replicas) is replaced by v2,
// rolled back, and a v3 whose health check fails is refused: no request
// fails, responses switch v1 → v2 → v1, v3 never serves.
func TestBenchDeploy(t *testing.T) {
	code, stdout, stderr := berthCLI(t.Context(), "bench", "deploy", "--replicas", "3", "--json", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("berth bench deploy: exit %d: %s", code, stderr)
	}
	var res bench.DeployResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	t.Logf("%s", stdout)
	if res.FailedRequests != 0 || res.Requests == 0 {
		t.Errorf("%d of %d requests failed: %v", res.FailedRequests, res.Requests, res.Failures)
	}
	if res.Replicas != 3 || res.DeploySec <= 0 || res.SwitchSec < res.DeploySec {
		t.Errorf("figures: %+v", res)
	}
	want := []struct{ outcome, serves string }{{"succeeded", "v2"}, {"succeeded", "v1"}, {"failed", "v1"}}
	if len(res.Steps) != len(want) {
		t.Fatalf("steps: %+v", res.Steps)
	}
	for i, w := range want {
		s := res.Steps[i]
		if s.Outcome != w.outcome {
			t.Errorf("%s: outcome %s (%s), want %s", s.Name, s.Outcome, s.Reason, w.outcome)
		}
		if got := slices.Sorted(maps.Keys(s.After)); !slices.Equal(got, []string{w.serves}) {
			t.Errorf("%s: then served %v, want only %s", s.Name, s.After, w.serves)
		}
	}
	if r := res.Steps[2].Reason; !strings.Contains(r, "health check") {
		t.Errorf("v3 failed for %q, want its health check", r)
	}
	if res.Versions["v3"] != 0 || res.Versions["v1"] == 0 || res.Versions["v2"] == 0 {
		t.Errorf("versions served: %v", res.Versions)
	}
}
