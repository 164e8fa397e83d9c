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
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/store/etcd"
	"github.com/berthd/berth/templates"
)

// e2eRig is what the benchmarks that measure through a proxy run berth
// up's pipeline on, in one process: the embedded store, the embedded
// runtime on a bridge of its own (Image imports busybox httpd images),
// a real nginx's prefix directory, and the shipped nginx.conf.tmpl around
// fragment as the template (checked with nginx -t, reloaded with SIGHUP
// to nginx's master, each reload counted in Reloads). Start adds the
// daemon, the proxy and the daemon API with a client, as berth up serves
// them; Close removes everything.
type e2eRig struct {
	St      *etcd.Store
	Rt      *embedded.Runtime
	Suffix  string      // names what the benchmark creates
	Client  *api.Client // the daemon API, once started
	Nginx   *realparts.Nginx
	Proxy   proxyProcess // what Start starts: Nginx, unless a benchmark puts another proxy (and its Tmpl, Env) in
	Tmpl    config.Template
	Env     map[string]string // what the template reads (listen addresses)
	Reloads string            // a file with one line per reload
	Dir     string            // holds it all; Close removes it

	quiet *slog.Logger
	undo  []func()
}

// newE2ERig prepares the rig in a new directory, Dir (a bridge named
// bridge+Suffix on 10.octet.x.0/24); the parts log errors only.
func newE2ERig(ctx context.Context, bridge string, octet byte, fragment string, rtOpts ...embedded.Option) (_ *e2eRig, err error) {
	tmp, err := os.MkdirTemp("", "berth-bench-"+bridge+"-")
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	r := &e2eRig{Dir: tmp, quiet: quiet, Reloads: filepath.Join(tmp, "reloads")}
	r.undo = append(r.undo, func() { os.RemoveAll(tmp) })
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.St, err = etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: filepath.Join(tmp, "store"), Logger: quiet}); err != nil {
		return nil, err
	}
	r.undo = append(r.undo, func() { r.St.Close() })
	rt, suffix, stopRuntime, err := startEmbedded(ctx, tmp, bridge, octet, quiet, rtOpts...)
	if err != nil {
		return nil, err
	}
	r.Rt, r.Suffix = rt, suffix
	r.undo = append(r.undo, stopRuntime)

	ngx := filepath.Join(tmp, "nginx")
	if err := os.Mkdir(ngx, 0o755); err != nil {
		return nil, err
	}
	if r.Nginx, err = realparts.NewNginx(ngx); err != nil {
		return nil, err
	}
	for _, name := range []string{"nginx.conf.tmpl", fragment} {
		data, err := fs.ReadFile(templates.Files(), name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	// The shipped templates read their listen addresses from .Env.
	r.Env = map[string]string{"BERTH_NGINX_LISTEN": r.Nginx.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
	r.Tmpl = config.Template{
		Name: "nginx", Src: filepath.Join(tmp, "nginx.conf.tmpl"), Origin: "bench",
		Options:  dialect.Options{Dialect: dialect.Native, Includes: []string{filepath.Join(tmp, fragment)}},
		Prefixes: []string{"/berth/services/"},
		Spec: render.Spec{Name: "nginx", Dest: r.Nginx.Conf,
			Check:  fmt.Sprintf("%s -t -q -p %s/ -c {{.src}}", r.Nginx.Bin, ngx),
			Reload: fmt.Sprintf("if [ -s %[1]s/nginx.pid ]; then echo >> %[2]s; kill -HUP $(cat %[1]s/nginx.pid); fi", ngx, r.Reloads)},
	}
	return r, nil
}

// Image imports a busybox rootfs with /www/index.html holding content
// as image ref.
func (r *e2eRig) Image(ctx context.Context, ref, content string) error {
	rootfs := filepath.Join(r.Dir, "rootfs-"+ref)
	if err := embedded.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "www"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "www", "index.html"), []byte(content), 0o644); err != nil {
		return err
	}
	_, err := r.Rt.Images().Import(ctx, rootfs, ref)
	return err
}

// Start runs the daemon (registrar and runner) with cfg on the rig's
// template and its API (deploys included) for Client, waits for the first
// render and starts the proxy (nginx unless Proxy is set) on it.
func (r *e2eRig) Start(ctx context.Context, cfg daemon.Config) error {
	cfg.Env, cfg.Logger = r.Env, r.quiet
	d, err := daemon.New(r.St, r.Rt, cfg)
	if err != nil {
		return err
	}
	dctx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan error, 1)
	go func() { daemonDone <- d.Run(dctx, []config.Template{r.Tmpl}) }()
	r.undo = append(r.undo, func() { stopDaemon(); <-daemonDone })

	sock := filepath.Join(r.Dir, "berth.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		return err
	}
	actx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.NewServer(r.Rt, api.WithServerLogger(r.quiet), d.DeployAPI()).Serve(actx, ln) }()
	r.undo = append(r.undo, func() { stopAPI(); <-apiDone })
	r.Client = api.NewClient(sock)

	if r.Proxy == nil {
		r.Proxy = nginxProcess{r.Nginx}
	}
	if err := waitFor(ctx, 60*time.Second, func() bool { _, err := os.Stat(r.Proxy.conf()); return err == nil }); err != nil {
		return fmt.Errorf("the template never rendered: %w", err)
	}
	if err := r.Proxy.start(); err != nil {
		return err
	}
	r.undo = append(r.undo, r.Proxy.stop)
	return nil
}

// Close undoes everything, last first.
func (r *e2eRig) Close() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo = nil
}
