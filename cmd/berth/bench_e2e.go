package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/templates"
)

// e2eBenchResult is the JSON of berth bench e2e; its fields are part of
// berth's interface (compared across runs).
type e2eBenchResult struct {
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

func newBenchE2ECommand() *cobra.Command {
	var runs int
	var asJSON bool
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
			res, err := offMain(func() (e2eBenchResult, error) { return benchE2E(cmd.Context(), runs, log) })
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
	return cmd
}

func benchE2E(ctx context.Context, runs int, log *slog.Logger) (res e2eBenchResult, err error) {
	res.Runs = runs
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return res, errors.New("nginx not found: install Debian's nginx")
		}
		nginxBin = "/usr/sbin/nginx"
	}
	tmp, err := os.MkdirTemp("", "berth-bench-e2e-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// The store.
	st, err := etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: filepath.Join(tmp, "store"), Logger: quiet})
	if err != nil {
		return res, err
	}
	defer st.Close()

	// The runtime, its API and a busybox image.
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	subnet := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 253, b[0], 0}), 24)
	rt, err := embedded.New(ctx, embedded.WithStateDir(filepath.Join(tmp, "state")),
		embedded.WithBridge("be2e"+suffix, subnet), embedded.WithCgroupParent("berth-bench-"+suffix), embedded.WithLogger(quiet))
	if err != nil {
		return res, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		cs, _ := rt.List(cctx)
		for _, c := range cs {
			_ = rt.Remove(cctx, c.ID, runtime.Force())
		}
		_ = rt.Close()
		_ = rt.Network().RemoveBridge()
	}()
	rootfs := filepath.Join(tmp, "rootfs")
	if err := embedded.BusyboxRootfs(rootfs); err != nil {
		return res, err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "www"), 0o755); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte("ok\n"), 0o644); err != nil {
		return res, err
	}
	if _, err := rt.Images().Import(ctx, rootfs, "bench:httpd"); err != nil {
		return res, err
	}
	sock := filepath.Join(tmp, "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		return res, err
	}
	actx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.NewServer(rt, api.WithServerLogger(quiet)).Serve(actx, ln) }()
	defer func() { stopAPI(); <-apiDone }()
	client := api.NewClient(sock)

	// nginx and its template.
	ngx := filepath.Join(tmp, "nginx")
	if err := os.MkdirAll(filepath.Join(ngx, "tmp"), 0o755); err != nil {
		return res, err
	}
	for _, name := range []string{"nginx.conf.tmpl", "nginx.tmpl"} {
		data, err := fs.ReadFile(templates.Files(), name)
		if err != nil {
			return res, err
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return res, err
		}
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return res, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// The shipped template reads its listen addresses from .Env.
	env := map[string]string{"BERTH_NGINX_LISTEN": addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
	conf := filepath.Join(ngx, "nginx.conf")
	tmpl := config.Template{
		Name: "nginx", Src: filepath.Join(tmp, "nginx.conf.tmpl"), Origin: "bench",
		Options:  dialect.Options{Dialect: dialect.Native, Includes: []string{filepath.Join(tmp, "nginx.tmpl")}},
		Prefixes: []string{"/berth/services/"},
		Spec: render.Spec{Name: "nginx", Dest: conf,
			Check:  fmt.Sprintf("%s -t -q -p %s/ -c {{.src}}", nginxBin, ngx),
			Reload: fmt.Sprintf("if [ -s %[1]s/nginx.pid ]; then kill -HUP $(cat %[1]s/nginx.pid); fi", ngx)},
	}
	d, err := daemon.New(st, rt, daemon.Config{Registrar: registrar.Config{Host: "bench"}, Env: env, Logger: quiet})
	if err != nil {
		return res, err
	}
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- d.Run(dctx, []config.Template{tmpl}) }()
	defer func() { stopDaemon(); <-daemonDone }()
	if err := waitFor(ctx, 30*time.Second, func() bool { _, err := os.Stat(conf); return err == nil }); err != nil {
		return res, fmt.Errorf("the template never rendered: %w", err)
	}
	nginx := exec.Command(nginxBin, "-p", ngx+"/", "-e", filepath.Join(ngx, "error.log"), "-c", conf)
	// No Pdeathsig: it follows the OS thread that started nginx, and the
	// runtime's network code retires threads (locked to a netns): nginx's
	// master would be killed mid-run, leaving its workers orphaned.
	nginx.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nginx.Start(); err != nil {
		return res, fmt.Errorf("start nginx: %w", err)
	}
	defer func() {
		_ = nginx.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { _ = nginx.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = nginx.Process.Kill()
			<-done
		}
	}()
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

// waitFor polls cond every millisecond until it holds.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
