package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
)

// E2EResult is the JSON of berth bench e2e; its fields are part of
// berth's interface (compared across runs).
type E2EResult struct {
	Runs      int     `json:"runs"`
	UpP50Ms   float64 `json:"up_p50_ms"`
	UpP99Ms   float64 `json:"up_p99_ms"`
	DownP50Ms float64 `json:"down_p50_ms"`
	DownP99Ms float64 `json:"down_p99_ms"`
	// Until the new nginx.conf is in place (rendered, checked with
	// nginx -t, swapped), before the reload: berth's share, and nginx's
	// check, without nginx's reload.
	UpConfP50Ms   float64 `json:"up_conf_p50_ms"`
	DownConfP50Ms float64 `json:"down_conf_p50_ms"`
	// nginx -t alone, on the configuration of the median run.
	NginxCheckMs float64 `json:"nginx_check_ms"`
}

// E2E runs the whole pipeline as berth up does, in one process — the
// embedded store and runtime, the registrar, the shipped nginx template and
// a real nginx on a free loopback port — and times, over runs containers
// started and then stopped one after another through the daemon API, from
// the API call returning to nginx serving (up) or dropping (down) the
// container. Needs root, nginx and busybox-static; everything it creates
// is removed.
func E2E(ctx context.Context, runs int, log *slog.Logger) (E2EResult, error) {
	return offMain(func() (E2EResult, error) { return benchE2E(ctx, runs, log) })
}

func benchE2E(ctx context.Context, runs int, log *slog.Logger) (res E2EResult, err error) {
	res.Runs = runs
	rig, err := newE2ERig(ctx, "be2e", 253, "nginx.tmpl")
	if err != nil {
		return res, err
	}
	defer rig.Close()
	if err := rig.Image(ctx, "bench:httpd", "ok\n"); err != nil {
		return res, err
	}
	if err := rig.Start(ctx, daemon.Config{Registrar: registrar.Config{Host: "bench"}}); err != nil {
		return res, err
	}
	nginx, client, suffix := rig.Nginx, rig.Client, rig.Suffix
	nginxBin, addr, conf, ngx := nginx.Bin, nginx.Addr, nginx.Conf, nginx.Dir
	// A new connection per probe: an idle keep-alive connection stays with
	// an old worker, which serves the old configuration until it closes.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	confHas := func(host string) bool {
		b, err := os.ReadFile(conf)
		return err == nil && bytes.Contains(b, []byte("server_name "+host+";"))
	}
	status := func(host string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		req.Host = host
		resp, err := hc.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if err := waitFor(ctx, 30*time.Second, func() bool { return status("nobody.localhost") == http.StatusServiceUnavailable }); err != nil {
		return res, fmt.Errorf("nginx never answered on %s: %w", addr, err)
	}

	// Up: one container after another, each timed until nginx serves it.
	type started struct{ id, host string }
	var cs []started
	var ups, downs, upConfs, downConfs []time.Duration
	// until polls for the configuration, then for nginx's answer, and
	// returns when each was reached.
	until := func(host string, inConf bool, code int) (conf, served time.Duration, err error) {
		t0 := time.Now()
		err = waitFor(ctx, 30*time.Second, func() bool {
			if conf == 0 && confHas(host) == inConf {
				conf = time.Since(t0)
			}
			return conf != 0 && status(host) == code
		})
		return conf, time.Since(t0), err
	}
	for i := 0; i <= runs; i++ { // 0 warms up
		host := fmt.Sprintf("c%d.bench.localhost", i)
		c, err := client.Run(ctx, runtime.Spec{
			Name: fmt.Sprintf("bench-%s-%d", suffix, i), Image: "bench:httpd",
			Cmd: []string{"httpd", "-f", "-p", "80", "-h", "/www"},
			Env: []string{"VIRTUAL_HOST=" + host},
		})
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i, err)
		}
		inPlace, served, err := until(host, true, http.StatusOK)
		if err != nil {
			return res, fmt.Errorf("container %d (%s) never served through nginx: %w", i, c.IP, err)
		}
		if i > 0 {
			ups, upConfs = append(ups, served), append(upConfs, inPlace)
		}
		cs = append(cs, started{c.ID, host})
		if i == (runs+1)/2 { // the median run's configuration: time nginx -t on it
			if res.NginxCheckMs, err = timeCheck(ctx, nginxBin, ngx, conf); err != nil {
				return res, err
			}
		}
	}
	// Down: one after another, each timed until nginx no longer routes it.
	for i, c := range cs {
		if err := client.Stop(ctx, c.id, 0); err != nil {
			return res, fmt.Errorf("stop %d: %w", i, err)
		}
		inPlace, gone, err := until(c.host, false, http.StatusServiceUnavailable)
		if err != nil {
			return res, fmt.Errorf("container %d still routed after its stop: %w", i, err)
		}
		if i > 0 {
			downs, downConfs = append(downs, gone), append(downConfs, inPlace)
		}
	}
	res.UpConfP50Ms, res.DownConfP50Ms = ms(percentile(upConfs, 50)), ms(percentile(downConfs, 50))
	res.UpP50Ms, res.UpP99Ms = ms(percentile(ups, 50)), ms(percentile(ups, 99))
	res.DownP50Ms, res.DownP99Ms = ms(percentile(downs, 50)), ms(percentile(downs, 99))
	log.Info("end-to-end latency measured", "runs", runs)
	return res, nil
}

// timeCheck is the median of five nginx -t runs on conf.
func timeCheck(ctx context.Context, nginxBin, prefix, conf string) (float64, error) {
	var checks []time.Duration
	for range 5 {
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, nginxBin, "-t", "-q", "-p", prefix+"/", "-c", conf).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("nginx -t: %v: %s", err, out)
		}
		checks = append(checks, time.Since(t0))
	}
	return ms(percentile(checks, 50)), nil
}
