package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/berthd/berth/bench"
)

// TestBenchE2EProxy runs berth bench e2e --proxy all (every proxy, one
// JSON line each, as the closing note of issue #15 takes them) through
// the daemon, real containers and a real nginx or HAProxy under load: with
// live endpoints containers come and go without a reload and without a
// failed request; with the reload path every start and stop reloads.
func TestBenchE2EProxy(t *testing.T) {
	code, stdout, stderr := berthCLI(t.Context(), "bench", "e2e", "--proxy", "all", "--vhosts", "20", "--runs", "3", "--json", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("berth bench e2e --proxy all: exit %d: %s", code, stderr)
	}
	var got []string
	for sc := bufio.NewScanner(strings.NewReader(stdout)); sc.Scan(); {
		var res bench.E2EProxyResult
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		got = append(got, res.Proxy)
		if res.VHosts != 20 || res.Runs != 3 || res.UpP50Ms <= 0 || res.UpP99Ms < res.UpP50Ms ||
			res.DownP99Ms < res.DownP50Ms || res.Requests < 100 || res.MaxGenerations < 1 {
			t.Errorf("figures: %+v", res)
		}
		switch res.Proxy {
		case "nginx-lua", "haproxy":
			if res.Reloads != 0 || res.FailedRequests != 0 || res.MaxGenerations != 1 {
				t.Errorf("%s, live endpoints: %d reloads, %d failed requests, %d generations; want 0, 0, 1", res.Proxy, res.Reloads, res.FailedRequests, res.MaxGenerations)
			}
		case "nginx":
			if res.Reloads < 2*res.Runs {
				t.Errorf("reload path: %d reloads for %d starts and stops", res.Reloads, 2*res.Runs)
			}
		}
	}
	if strings.Join(got, ",") != strings.Join(bench.Proxies(), ",") {
		t.Errorf("results for %q, want one per proxy: %q", got, bench.Proxies())
	}
}

// TestBenchE2EProxyUsage: a proxy or count berth does not know is refused
// (exit 2) before anything starts.
func TestBenchE2EProxyUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy", "nginx,bogus"}, `--proxy "bogus"`},
		{[]string{"--proxy", "all", "--vhosts", "100,-1"}, "--vhosts must not be negative"},
		{[]string{"--proxy", "all", "--vhosts", "100,x"}, "--vhosts"},
	} {
		code, _, stderr := berthCLI(t.Context(), append([]string{"bench", "e2e"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
