package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/bench"
)

func newBenchE2ECommand() *cobra.Command {
	var runs, vhosts int
	var asJSON bool
	var proxy string
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
of Debian's haproxy.

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
			if proxy != "" || cmd.Flags().Changed("vhosts") {
				return benchE2EProxy(cmd, bench.E2EProxyOptions{Proxy: proxy, VHosts: vhosts, Runs: runs}, asJSON, log)
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
	cmd.Flags().StringVar(&proxy, "proxy", "", "measure under load with this proxy: "+strings.Join(bench.Proxies(), ", "))
	cmd.Flags().IntVar(&vhosts, "vhosts", 100, "with --proxy: virtual hosts in the configuration besides the measured one")
	return cmd
}

func benchE2EProxy(cmd *cobra.Command, o bench.E2EProxyOptions, asJSON bool, log *slog.Logger) error {
	if !slices.Contains(bench.Proxies(), o.Proxy) {
		return usagef("--proxy %q: want one of %s", o.Proxy, strings.Join(bench.Proxies(), ", "))
	}
	if o.VHosts < 0 {
		return usagef("--vhosts must not be negative")
	}
	res, err := bench.E2EProxy(cmd.Context(), o, log)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		return json.NewEncoder(out).Encode(res)
	}
	fmt.Fprintf(out, "proxy %s, %d vhosts, %d runs\nup   (run returned → the proxy answers from it):  p50 %.1f ms  p99 %.1f ms\ndown (stop called → last request sent to it): p50 %.1f ms  p99 %.1f ms\nreloads %d, at most %d worker generations, %d requests, %d failed\n",
		res.Proxy, res.VHosts, res.Runs, res.UpP50Ms, res.UpP99Ms, res.DownP50Ms, res.DownP99Ms, res.Reloads, res.MaxGenerations, res.Requests, res.FailedRequests)
	return nil
}
