package bench_test

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/berthd/berth/bench"
	"github.com/berthd/berth/store/memstore"
)

// The store and watch measurements run on any store.Store: on the memory
// store they finish in moments, report every figure and leave nothing.
// (berth bench store|watch measure the real backends; TestBenchRuntime and
// TestBenchE2E in cmd/berth run the real-part measurements.)
func TestStoreAndWatchOnMemstore(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	sr, err := bench.Store(t.Context(), st, 20, 300)
	if err != nil {
		t.Fatal(err)
	}
	if sr.Puts != 20 || sr.Keys != 300 || sr.ListedCount != 300 || sr.WatchP99Ms < sr.WatchP50Ms {
		t.Errorf("store figures: %+v", sr)
	}
	wr, err := bench.Watch(t.Context(), st, bench.WatchConfig{Services: 50, Changes: 5, Rate: 100, Duration: 300 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if wr.Services != 50 || wr.Changes != 5 || !wr.FinalMatch || wr.ChurnRenders == 0 || wr.P50Ms <= 0 || wr.RenderMs <= 0 ||
		!wr.Natural.FinalMatch || wr.Natural.ChurnRenders == 0 || wr.Natural.P50Ms <= 0 || wr.Natural.RenderMs <= 0 {
		t.Errorf("watch figures: %+v", wr)
	}
	if kvs, _, err := st.List(t.Context(), "/"); err != nil || len(kvs) != 0 {
		t.Errorf("left behind: %d keys, %v", len(kvs), err)
	}
}

func TestStartBackendUnknown(t *testing.T) {
	if _, _, err := bench.StartBackend("nosuch"); !errors.Is(err, bench.ErrUnknownBackend) {
		t.Fatalf("err = %v, want ErrUnknownBackend", err)
	}
}
