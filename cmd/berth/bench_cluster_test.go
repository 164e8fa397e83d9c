package main

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// TestBenchCluster runs berth bench cluster small and checks its JSON:
// exactly the documented fields, every figure measured, the store load
// without dedup growing with the renderers, and with dedup below it.
func TestBenchCluster(t *testing.T) {
	code, stdout, stderr := berthCLI(t.Context(), "bench", "cluster", "--json", "--changes", "3", "--renderers", "1,3", "--ttl", "2s")
	if code != 0 {
		t.Fatalf("berth bench cluster: exit %d: %s", code, stderr)
	}
	t.Logf("%s", stdout)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &fields); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	want := []string{"heal_converge_ms", "hosts", "local_p50_ms", "remote_p50_ms", "remote_p99_ms", "renderers", "store_ops_per_change", "store_ops_per_change_dedup"}
	if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	var r struct {
		Hosts                     int
		Renderers                 []int
		LocalP50, RemoteP50, Heal float64
		StoreOps, StoreOpsDedup   []float64
	}
	json.Unmarshal(fields["hosts"], &r.Hosts)
	json.Unmarshal(fields["renderers"], &r.Renderers)
	json.Unmarshal(fields["local_p50_ms"], &r.LocalP50)
	json.Unmarshal(fields["remote_p50_ms"], &r.RemoteP50)
	json.Unmarshal(fields["heal_converge_ms"], &r.Heal)
	json.Unmarshal(fields["store_ops_per_change"], &r.StoreOps)
	json.Unmarshal(fields["store_ops_per_change_dedup"], &r.StoreOpsDedup)
	if r.Hosts != 3 || !slices.Equal(r.Renderers, []int{1, 3}) || r.LocalP50 <= 0 || r.RemoteP50 <= 0 || r.Heal <= 0 {
		t.Errorf("figures: %+v", r)
	}
	if len(r.StoreOps) != 2 || len(r.StoreOpsDedup) != 2 || r.StoreOps[1] <= r.StoreOps[0] {
		t.Errorf("store load: %v without dedup, %v with", r.StoreOps, r.StoreOpsDedup)
	}
	// With dedup the followers take the outputs peer to peer: 3 renderers
	// cost the store what one does, less than 3 without dedup.
	if len(r.StoreOpsDedup) == 2 && r.StoreOpsDedup[1] >= r.StoreOps[1] {
		t.Errorf("store load of 3 renderers: %v with dedup, not below %v without", r.StoreOpsDedup[1], r.StoreOps[1])
	}
}
