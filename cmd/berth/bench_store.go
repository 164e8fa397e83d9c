package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
	"github.com/berthd/berth/store/backend"
)

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
					url, stop, err := bench.StartBackend(b)
					if errors.Is(err, bench.ErrUnknownBackend) {
						return usagef("--backends: %v", err)
					}
					if err != nil {
						return err
					}
					defer stop()
					targets = append(targets, target{b, url})
				}
			}
			var results []bench.StoreResult
			for _, tg := range targets {
				st, err := backend.Open(cmd.Context(), tg.url, sf.options(log)...)
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				r, err := bench.Store(cmd.Context(), st, puts, keys)
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
