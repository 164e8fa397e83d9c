package daemon

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/berthd/berth/registrar"
)

// TestPrepareClusterRefuses: cluster settings that cannot work are
// ErrSettings before anything starts.
func TestPrepareClusterRefuses(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
	}{
		{"init with an external store", Settings{StoreURL: "etcd://127.0.0.1:2379", Cluster: ClusterSettings{Init: true}}},
		{"join with an external store", Settings{StoreURL: "consul://127.0.0.1:8500", Cluster: ClusterSettings{Join: "https://10.0.0.1:2380", Token: "t"}}},
		{"init and join", Settings{Cluster: ClusterSettings{Init: true, Join: "https://10.0.0.1:2380", Token: "t"}}},
		{"join without a token", Settings{Cluster: ClusterSettings{Join: "https://10.0.0.1:2380"}}},
		{"advertise not an IP", Settings{Cluster: ClusterSettings{Advertise: "edge-1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.StateDir = t.TempDir()
			s.Daemon.Registrar = registrar.Config{Host: "h1"}
			_, _, err := prepareCluster(context.Background(), s, slog.Default())
			if !errors.Is(err, ErrSettings) {
				t.Fatalf("prepareCluster = %v, want ErrSettings", err)
			}
		})
	}
}
