package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchE2ECommand() *cobra.Command {
	var runs int
	var vhosts []int
	var asJSON bool
	var proxy, cpuProfile string
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "Time from berth run to nginx serving the container, and from berth stop to its removal",
		Long: `berth bench e2e runs the whole pipeline as berth up does, in one process:
the embedded store, the embedded runtime (a bridge of its own, busybox
httpd containers), the registrar, the shipped nginx template (wait
disabled, no drain) and a real nginx on a free 127.0.0.1 port. Containers
are started one after another through the daemon API (as berth run does),
each with its own VIRTUAL_HOST, until --runs are up; then stopped one after
another (as berth stop does).

  up:   from the API's run call returning to nginx answering 200 for the
        container's host name;
  down: from the API's stop call returning to nginx answering 503 for it
        (its server gone from the configuration and nginx reloaded).

Each also reports when the new nginx.conf was in place (rendered,
checked with nginx -t, swapped): the rest is nginx's reload. nginx is
reloaded with SIGHUP to its master, as "nginx -s reload" does after
parsing the whole configuration once more.

With --proxy nginx|nginx-lua|haproxy it measures instead, under a continuous load
of 200 requests per second on one host name, containers joining and
leaving that host one after another, with --vhosts more virtual hosts in
the configuration (issue #15: live endpoints against reloads):

  up:   from the run call returning to nginx answering from the container;
  down: from the stop call to the last request nginx sent the container
        (the stop drains first, 2s, as berth up does with live endpoints);

and the reloads, the most nginx worker generations alive at once, and the
load's requests and failed requests. nginx is the shipped nginx.tmpl
(every change rendered, checked and reloaded); nginx-lua is the shipped
nginx-lua.tmpl with live = "nginx-lua" (needs libnginx-mod-http-lua);
haproxy is the shipped haproxy.cfg.tmpl with live = "haproxy" in front
of Debian's haproxy. --proxy takes a comma list, or all, and --vhosts a
comma list: each proxy is measured at each count, one after another, one
result (one JSON line) each, e.g. issue #15's matrix:

  berth bench e2e --proxy all --vhosts 100,1000 --json

--cpuprofile writes a CPU profile of the whole run (the bench runs berth
up's pipeline in its own process): go tool pprof bin/berth FILE.

Needs root, nginx and busybox-static. Everything it creates is removed.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runs < 1 {
				return usagef("--runs must be at least 1")
			}
			log, err := commandLogger(cmd)
			if err != nil {
				return err
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if proxy != "" || cmd.Flags().Changed("vhosts") {
				return benchE2EProxy(cmd, proxy, vhosts, runs, asJSON, log)
			}
			res, err := bench.E2E(cmd.Context(), runs, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			fmt.Fprintf(out, "runs: %d\nup   (run returned → nginx serves it):  p50 %.1f ms  p99 %.1f ms  (new nginx.conf in place: p50 %.1f ms)\ndown (stop returned → nginx drops it): p50 %.1f ms  p99 %.1f ms  (new nginx.conf in place: p50 %.1f ms)\nnginx -t alone (median run's configuration): %.1f ms\n",
				res.Runs, res.UpP50Ms, res.UpP99Ms, res.UpConfP50Ms, res.DownP50Ms, res.DownP99Ms, res.DownConfP50Ms, res.NginxCheckMs)
			return nil
		},
	}
	cmd.Flags().IntVar(&runs, "runs", 50, "containers to start and stop")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&proxy, "proxy", "", "measure under load with these proxies (a comma list, or all): "+strings.Join(bench.Proxies(), ", "))
	cmd.Flags().IntSliceVar(&vhosts, "vhosts", []int{100}, "with --proxy: virtual hosts in the configuration besides the measured one (a comma list: each is measured)")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	return cmd
}

func benchE2EProxy(cmd *cobra.Command, proxy string, vhosts []int, runs int, asJSON bool, log *slog.Logger) error {
	proxies := strings.Split(proxy, ",")
	if proxy == "all" {
		proxies = bench.Proxies()
	}
	for _, p := range proxies {
		if !slices.Contains(bench.Proxies(), p) {
			return usagef("--proxy %q: want all or a comma list of %s", p, strings.Join(bench.Proxies(), ", "))
		}
	}
	for _, n := range vhosts {
		if n < 0 {
			return usagef("--vhosts must not be negative")
		}
	}
	out := cmd.OutOrStdout()
	return bench.E2EProxies(cmd.Context(), proxies, vhosts, bench.E2EProxyOptions{Runs: runs}, log, func(res bench.E2EProxyResult) error {
		if asJSON {
			return json.NewEncoder(out).Encode(res)
		}
		_, err := fmt.Fprintf(out, "proxy %s, %d vhosts, %d runs\nup   (run returned → the proxy answers from it):  p50 %.1f ms  p99 %.1f ms\ndown (stop called → last request sent to it): p50 %.1f ms  p99 %.1f ms\nreloads %d, at most %d worker generations, %d requests, %d failed\n",
			res.Proxy, res.VHosts, res.Runs, res.UpP50Ms, res.UpP99Ms, res.DownP50Ms, res.DownP99Ms, res.Reloads, res.MaxGenerations, res.Requests, res.FailedRequests)
		return err
	})
}

// startCPUProfile starts a CPU profile into path; stop ends and writes it.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
