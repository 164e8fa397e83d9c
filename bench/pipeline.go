package bench

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/templates"
)

// pipeline is berth up's parts in one process, for the benchmarks that
// measure through nginx: the embedded store and runtime (a bridge of its
// own), a daemon (registrar and runner) with the shipped nginx template, a
// real nginx on a free loopback port serving what it renders, and the
// daemon API on a socket.
type pipeline struct {
	tmp    string
	rt     *embedded.Runtime
	suffix string // names what the benchmark creates
	nginx  *realparts.Nginx
	d      *daemon.Daemon
	client *api.Client
	stops  []func() // in reverse order
}

// busyboxImage imports a busybox rootfs with /www/index.html holding
// content as image ref.
func (p *pipeline) busyboxImage(ctx context.Context, ref, content string) error {
	rootfs := filepath.Join(p.tmp, "rootfs-"+ref)
	if err := embedded.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "www"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte(content), 0o644); err != nil {
		return err
	}
	_, err := p.rt.Images().Import(ctx, rootfs, ref)
	return err
}

// startPipeline starts it all (bridge named bridge+suffix on
// 10.octet.x.0/24, the registrar as reg says); nginx serves once the
// template has rendered. close removes everything.
func startPipeline(ctx context.Context, bridge string, octet byte, reg registrar.Config, apiOpts func(*daemon.Daemon) []api.ServerOption) (p *pipeline, err error) {
	p = &pipeline{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.tmp, err = os.MkdirTemp("", "berth-bench-"+bridge+"-"); err != nil {
		return nil, err
	}
	p.stops = append(p.stops, func() { os.RemoveAll(p.tmp) })
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	st, err := etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: filepath.Join(p.tmp, "store"), Logger: quiet})
	if err != nil {
		return nil, err
	}
	p.stops = append(p.stops, func() { st.Close() })
	rt, suffix, stopRuntime, err := startEmbedded(ctx, p.tmp, bridge, octet, quiet)
	if err != nil {
		return nil, err
	}
	p.rt, p.suffix = rt, suffix
	p.stops = append(p.stops, stopRuntime)

	ngx := filepath.Join(p.tmp, "nginx")
	if err := os.Mkdir(ngx, 0o755); err != nil {
		return nil, err
	}
	if p.nginx, err = realparts.NewNginx(ngx); err != nil {
		return nil, err
	}
	for _, name := range []string{"nginx.conf.tmpl", "nginx.tmpl"} {
		data, err := fs.ReadFile(templates.Files(), name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(p.tmp, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	// The shipped template reads its listen addresses from .Env.
	env := map[string]string{"BERTH_NGINX_LISTEN": p.nginx.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
	tmpl := config.Template{
		Name: "nginx", Src: filepath.Join(p.tmp, "nginx.conf.tmpl"), Origin: "bench",
		Options:  dialect.Options{Dialect: dialect.Native, Includes: []string{filepath.Join(p.tmp, "nginx.tmpl")}},
		Prefixes: []string{"/berth/services/"},
		Spec: render.Spec{Name: "nginx", Dest: p.nginx.Conf,
			Check:  fmt.Sprintf("%s -t -q -p %s/ -c {{.src}}", p.nginx.Bin, ngx),
			Reload: fmt.Sprintf("if [ -s %[1]s/nginx.pid ]; then kill -HUP $(cat %[1]s/nginx.pid); fi", ngx)},
	}
	if p.d, err = daemon.New(st, rt, daemon.Config{Registrar: reg, Env: env, Logger: quiet}); err != nil {
		return nil, err
	}
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- p.d.Run(dctx, []config.Template{tmpl}) }()
	p.stops = append(p.stops, func() { stopDaemon(); <-daemonDone })

	sock := filepath.Join(p.tmp, "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		return nil, err
	}
	actx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	opts := append([]api.ServerOption{api.WithServerLogger(quiet)}, apiOpts(p.d)...)
	go func() { apiDone <- api.NewServer(rt, opts...).Serve(actx, ln) }()
	p.stops = append(p.stops, func() { stopAPI(); <-apiDone })
	p.client = api.NewClient(sock)

	if err := waitFor(ctx, 30*time.Second, func() bool { _, err := os.Stat(p.nginx.Conf); return err == nil }); err != nil {
		return nil, fmt.Errorf("the template never rendered: %w", err)
	}
	if err := p.nginx.Start(); err != nil {
		return nil, err
	}
	p.stops = append(p.stops, p.nginx.Stop)
	return p, nil
}

// close stops and removes everything, last started first.
func (p *pipeline) close() {
	for i := len(p.stops) - 1; i >= 0; i-- {
		p.stops[i]()
	}
	p.stops = nil
}
