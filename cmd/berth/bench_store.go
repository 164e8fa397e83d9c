package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
)

// storeBenchResult is one backend's figures; its JSON is part of berth's
// interface (bench output is compared across runs).
type storeBenchResult struct {
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

func newBenchStoreCommand() *cobra.Command {
	var (
		backends   []string
		puts, keys int
		asJSON     bool
		sf         *storeFlags
	)
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Measure put→watch-event latency and large listings on store backends",
		Long: `Measure, on each backend, the latency from a put to its watch event
(p50/p99 over --puts sequential puts) and the time to List --keys keys.

--backends starts each backend itself: "embedded" (in-process etcd in a temp
dir), "etcd" (Debian's etcd binary, one member on loopback), "consul" (a
consul -dev agent on loopback). --store measures an existing store instead.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			if puts <= 0 || keys <= 0 {
				return usagef("--puts and --keys must be positive")
			}
			type target struct{ name, url string }
			var targets []target
			if sf.url != "" { // only the flag: BERTH_STORE must not override --backends
				targets = append(targets, target{"store", sf.url})
			} else {
				for _, b := range backends {
					url, stop, err := startBenchBackend(b)
					if err != nil {
						return err
					}
					defer stop()
					targets = append(targets, target{b, url})
				}
			}
			var results []storeBenchResult
			for _, tg := range targets {
				st, err := backend.Open(cmd.Context(), tg.url, sf.options(log)...)
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				r, err := benchStore(cmd.Context(), st, puts, keys)
				st.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				r.Backend, r.URL = tg.name, tg.url
				results = append(results, r)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(w)
				return enc.Encode(results)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BACKEND\tPUTS\tWATCH p50\tWATCH p99\tKEYS\tLIST (median)")
			for _, r := range results {
				fmt.Fprintf(tw, "%s\t%d\t%.2f ms\t%.2f ms\t%d\t%.1f ms\n", r.Backend, r.Puts, r.WatchP50Ms, r.WatchP99Ms, r.Keys, r.ListMs)
			}
			return tw.Flush()
		},
	}
	sf = addStoreFlags(cmd.Flags())
	cmd.Flags().StringSliceVar(&backends, "backends", []string{"embedded"}, "backends to start and measure: embedded, etcd, consul")
	cmd.Flags().IntVar(&puts, "puts", 1000, "sequential puts for the watch latency")
	cmd.Flags().IntVar(&keys, "keys", 10000, "keys for the listing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// startBenchBackend starts a backend for the benchmark and returns its URL
// and how to stop it.
func startBenchBackend(name string) (url string, stop func(), err error) {
	switch name {
	case "embedded":
		dir, err := os.MkdirTemp("", "berth-bench-store-")
		if err != nil {
			return "", nil, err
		}
		return "embedded://" + dir, func() { os.RemoveAll(dir) }, nil
	case "etcd":
		c, err := testenv.LaunchEtcd(1)
		if err != nil {
			return "", nil, err
		}
		return c.URL(), c.Stop, nil
	case "consul":
		c, err := testenv.LaunchConsul()
		if err != nil {
			return "", nil, err
		}
		return "consul://" + c.Addr, c.Stop, nil
	}
	return "", nil, usagef("--backends: unknown backend %q (embedded, etcd, consul)", name)
}

// benchStore measures one store: sequential puts each awaited on a watch,
// then a listing of keys keys.
func benchStore(ctx context.Context, st store.Store, puts, keys int) (storeBenchResult, error) {
	prefix := fmt.Sprintf("/berth-bench/%d/", time.Now().UnixNano())
	defer st.Delete(context.WithoutCancel(ctx), prefix, store.WithPrefix())
	r := storeBenchResult{Puts: puts, Keys: keys}

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

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
