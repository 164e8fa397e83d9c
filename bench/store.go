package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/store"
)

// StoreResult is one backend's figures; its JSON is part of berth's
// interface (bench output is compared across runs).
type StoreResult struct {
	Backend     string  `json:"backend"`
	URL         string  `json:"url"`
	Puts        int     `json:"puts"`
	WatchP50Ms  float64 `json:"watch_p50_ms"`
	WatchP99Ms  float64 `json:"watch_p99_ms"`
	Keys        int     `json:"keys"`
	ListMs      float64 `json:"list_ms"` // median of listRuns listings
	ListedCount int     `json:"listed"`
}

const listRuns = 5

// ErrUnknownBackend: StartBackend does not know the name.
var ErrUnknownBackend = errors.New("unknown backend (embedded, etcd, consul)")

// StartBackend starts a backend for the benchmark — "embedded" (in-process
// etcd in a temp dir), "etcd" (Debian's etcd binary, one member on
// loopback), "consul" (a consul -dev agent on loopback) — and returns its
// URL and how to stop it.
func StartBackend(name string) (url string, stop func(), err error) {
	switch name {
	case "embedded":
		dir, err := os.MkdirTemp("", "berth-bench-store-")
		if err != nil {
			return "", nil, err
		}
		return "embedded://" + dir, func() { os.RemoveAll(dir) }, nil
	case "etcd":
		c, err := realparts.StartEtcd(1)
		if err != nil {
			return "", nil, err
		}
		return c.URL(), c.Stop, nil
	case "consul":
		c, err := realparts.StartConsul()
		if err != nil {
			return "", nil, err
		}
		return "consul://" + c.Addr, c.Stop, nil
	}
	return "", nil, fmt.Errorf("%q: %w", name, ErrUnknownBackend)
}

// Store measures one store: puts sequential puts each awaited on a watch,
// then a listing of keys keys. It writes under /berth-bench/ and deletes
// what it wrote.
func Store(ctx context.Context, st store.Store, puts, keys int) (StoreResult, error) {
	prefix := fmt.Sprintf("/berth-bench/%d/", time.Now().UnixNano())
	defer st.Delete(context.WithoutCancel(ctx), prefix, store.WithPrefix())
	r := StoreResult{Puts: puts, Keys: keys}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, rev, err := st.List(ctx, prefix+"w/")
	if err != nil {
		return r, err
	}
	ch := st.Watch(wctx, prefix+"w/", rev)
	lat := make([]time.Duration, 0, puts)
	for i := range puts {
		key := fmt.Sprintf("%sw/%06d", prefix, i)
		start := time.Now()
		if _, err := st.Put(ctx, key, []byte("x")); err != nil {
			return r, err
		}
		if err := awaitKey(ch, key); err != nil {
			return r, err
		}
		lat = append(lat, time.Since(start))
	}
	r.WatchP50Ms, r.WatchP99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))

	ops := make([]store.Op, 0, 64)
	for i := range keys {
		ops = append(ops, store.Put(fmt.Sprintf("%sl/svc%02d/host/%06d", prefix, i%50, i), []byte(`{"ip":"10.1.2.3","port":8080}`)))
		if len(ops) == cap(ops) || i == keys-1 {
			if _, err := st.Txn(ctx, ops...); err != nil {
				return r, err
			}
			ops = ops[:0]
		}
	}
	runs := make([]time.Duration, 0, listRuns)
	for range listRuns {
		start := time.Now()
		kvs, _, err := st.List(ctx, prefix+"l/")
		if err != nil {
			return r, err
		}
		runs = append(runs, time.Since(start))
		r.ListedCount = len(kvs)
	}
	if r.ListedCount != keys {
		return r, fmt.Errorf("listed %d keys, wrote %d", r.ListedCount, keys)
	}
	r.ListMs = ms(percentile(runs, 50))
	return r, nil
}

// awaitKey reads watch responses until one carries key.
func awaitKey(ch <-chan store.WatchResponse, key string) error {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return errors.New("watch closed")
			}
			if resp.Err != nil {
				return resp.Err
			}
			for _, ev := range resp.Events {
				if ev.KV.Key == key {
					return nil
				}
			}
		case <-timeout:
			return fmt.Errorf("no watch event for %s within 30s", strings.TrimPrefix(key, "/"))
		}
	}
}
