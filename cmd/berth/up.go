package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/api/dockercompat"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
)

// upOptions are the flags of berth up. Most have a [daemon] or [runtime]
// field in berth.toml, some a BERTH_* variable (see each flag's help);
// flags win over the environment, the environment over the file.
type upOptions struct {
	sources *templateFlags
	store   *storeFlags

	runtime, subnet, bridge, cgroupParent  string
	hostname, socket, dockerSocket, listen string
	ttl, drain, resync, minInterval        time.Duration
	wait                                   string
	stopContainers, removeAll              bool
	stopGrace                              time.Duration
}

func newUpCommand() *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the berth daemon: containers, their registration, and the templates that follow them",
		Long: `berth up runs the daemon:

  - the container runtime (--runtime embedded, the default: berth's own
    containers, re-attached after a restart; docker: follow the Docker
    Engine at DOCKER_HOST; none: templates only);
  - the store (the embedded etcd server under the state directory unless
    --store or [store] names another);
  - the registrar: every running container with a service is registered
    under /berth/services/<service>/<host>/<id> on a lease that expires
    --ttl after the daemon dies; a stopped container is kept "draining"
    for --drain first; containers with a health check only while healthy;
  - the templates of --config, --confdir and --template, re-rendered when
    the records change (checked, swapped atomically, reloaded);
  - the berth API on --socket (mode 0660), which berth run, ps, logs ...
    use; with --docker-socket, a Docker-compatible API to the same
    containers (docker CLI, docker-gen, Traefik); with --listen, /metrics
    (Prometheus) and /healthz on that address.

SIGHUP re-reads the templates; SIGTERM or SIGINT stops the daemon. Its
containers keep running (a restarted daemon takes them over) unless
--stop-containers (or --rm) is given.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	o.sources = addTemplateFlags(f)
	o.sources.allowNone = true
	o.store = addStoreFlags(f)
	f.StringVar(&o.runtime, "runtime", "", "containers to follow: embedded, docker or none (env BERTH_RUNTIME; default embedded)")
	f.StringVar(&o.subnet, "subnet", "", "subnet of the embedded runtime's bridge (default "+network.DefaultSubnet+")")
	f.StringVar(&o.bridge, "bridge", "", "name of the embedded runtime's bridge (default "+network.DefaultBridge+")")
	f.StringVar(&o.cgroupParent, "cgroup-parent", "", "cgroup under which container cgroups are created (default berth)")
	f.StringVar(&o.hostname, "hostname", "", "this host's name in the store's keys (env BERTH_HOSTNAME; default the system's host name)")
	f.StringVar(&o.socket, "socket", "", "unix socket of the berth API (env BERTH_HOST; default "+api.DefaultSocket+")")
	f.StringVar(&o.dockerSocket, "docker-socket", "", "unix socket for a Docker-compatible API to the embedded runtime, for the docker CLI, docker-gen, Traefik (env BERTH_DOCKER_SOCKET; default off; e.g. /run/berth/docker.sock)")
	f.StringVar(&o.listen, "listen", "", "address for /metrics and /healthz, e.g. 127.0.0.1:9180 (env BERTH_LISTEN; default off)")
	f.DurationVar(&o.ttl, "ttl", 0, "lease of this host's records: how long they outlive a dead daemon (default 15s)")
	f.DurationVar(&o.drain, "drain", 0, "how long a stopped container's records stay, marked draining, before they go")
	f.DurationVar(&o.resync, "resync", 0, "reconcile the records with the containers, and re-list every watched prefix, this often (default 1m)")
	f.StringVar(&o.wait, "wait", "", `default quiescence "min[:max]" of templates that set none`)
	f.DurationVar(&o.minInterval, "min-reload-interval", 0, "default reload budget: at most one change applied per template in this interval")
	f.BoolVar(&o.stopContainers, "stop-containers", false, "stop the embedded runtime's containers when the daemon stops")
	f.BoolVar(&o.removeAll, "rm", false, "when the daemon stops, stop and remove its containers and remove the bridge: leave nothing behind (demos, CI)")
	f.DurationVar(&o.stopGrace, "stop-timeout", 10*time.Second, "with --stop-containers: grace period before a container is killed")
	return cmd
}

// settings is the daemon's configuration after flags, environment and
// the configuration file.
type settings struct {
	runtime, subnet, bridge, cgroupParent  string
	stateDir, socket, dockerSocket, listen string
	registrar                              registrar.Config
	wait                                   config.Wait
}

func (o *upOptions) settings(flags *pflag.FlagSet, files []*config.File) (settings, error) {
	// The first berth.toml given holds the daemon's settings (the others
	// add templates).
	var file config.File
	if len(files) > 0 {
		file = *files[0]
	}
	s := settings{
		runtime:      cmp.Or(o.runtime, os.Getenv("BERTH_RUNTIME"), file.Runtime.Kind, "embedded"),
		subnet:       cmp.Or(o.subnet, file.Runtime.Subnet, network.DefaultSubnet),
		bridge:       cmp.Or(o.bridge, file.Runtime.Bridge, network.DefaultBridge),
		cgroupParent: cmp.Or(o.cgroupParent, file.Runtime.CgroupParent, "berth"),
		stateDir:     cmp.Or(o.store.stateDir, os.Getenv("BERTH_STATE_DIR"), file.Daemon.StateDir, backend.DefaultStateDir()),
		socket:       cmp.Or(o.socket, os.Getenv("BERTH_HOST"), file.Daemon.Socket, api.DefaultSocket),
		listen:       cmp.Or(o.listen, os.Getenv("BERTH_LISTEN"), file.Daemon.Listen),
		dockerSocket: cmp.Or(o.dockerSocket, os.Getenv("BERTH_DOCKER_SOCKET"), file.Daemon.DockerSocket),
	}
	if s.dockerSocket != "" && s.runtime != "embedded" {
		return s, usagef("--docker-socket serves the embedded runtime's containers (runtime is %s)", s.runtime)
	}
	switch s.runtime {
	case "embedded", "docker", "none":
	default:
		return s, usagef("--runtime %q: want embedded, docker or none", s.runtime)
	}
	if file.Prefix != "" {
		s.registrar.Prefix = file.Prefix
	}
	s.registrar.Host = cmp.Or(o.hostname, os.Getenv("BERTH_HOSTNAME"), file.Daemon.Host)
	s.registrar.Version = buildVersion()
	for _, d := range []struct {
		name   string
		flag   time.Duration
		file   string
		target *time.Duration
	}{{"ttl", o.ttl, file.Daemon.TTL, &s.registrar.TTL}, {"drain", o.drain, file.Daemon.Drain, &s.registrar.Drain}, {"resync", o.resync, file.Daemon.Resync, &s.registrar.Resync}} {
		*d.target = d.flag
		if !flags.Changed(d.name) && d.file != "" { // a flag given wins, even --drain 0
			v, err := time.ParseDuration(d.file) // validated by config.Load
			if err != nil {
				return s, usageError{err}
			}
			*d.target = v
		}
	}
	s.wait = file.Wait
	if o.wait != "" {
		w, err := config.ParseWait(o.wait)
		if err != nil {
			return s, usagef("--wait: %v", err)
		}
		s.wait = w
	}
	return s, nil
}

func (o *upOptions) run(cmd *cobra.Command) error {
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	// SIGHUP from the start: its default action would end the daemon
	// while it is still starting.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	templates, files, err := o.sources.load()
	if err != nil {
		return err
	}
	s, err := o.settings(cmd.Flags(), files)
	if err != nil {
		return err
	}
	if (o.stopContainers || o.removeAll) && s.runtime != "embedded" {
		// berth does not own a Docker Engine's containers.
		return usagef("--stop-containers and --rm apply to the embedded runtime only (runtime is %s)", s.runtime)
	}
	o.stopContainers = o.stopContainers || o.removeAll
	o.store.useConfig(files)
	o.store.stateDir = s.stateDir
	// SIGTERM and SIGINT end the command's context; the daemon runs on one
	// of its own, so that shutdown can still drain containers through it.
	signalled := cmd.Context()
	ctx, cancel := context.WithCancel(context.WithoutCancel(signalled))
	defer cancel()

	// The runtime first: with the embedded one, an unusable host (not
	// root, no overlayfs, no cgroups) is the likeliest error.
	rt, closeRT, err := o.openRuntime(ctx, s, log)
	if err != nil {
		return err
	}
	defer closeRT()

	st, err := o.store.open(ctx, log)
	if err != nil {
		return err
	}
	// A daemon that stops and leaves its containers running leaves their
	// records to the lease: a restart within the TTL takes them over, so
	// proxies never see them go; otherwise they expire. Close would revoke
	// the lease and remove them at once.
	defer func() {
		if dt, ok := st.(store.Detacher); ok && !o.stopContainers {
			_ = dt.Detach()
			return
		}
		_ = st.Close()
	}()

	d, err := daemon.New(st, rt, daemon.Config{
		Registrar:         s.registrar,
		DefaultWait:       s.wait,
		MinReloadInterval: o.minInterval,
		Resync:            s.registrar.Resync,
		Logger:            log,
	})
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait: the servers stop when ctx ends
	fail := make(chan error, 4)
	serve := func(what string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil && ctx.Err() == nil {
				fail <- fmt.Errorf("%s: %w", what, err)
			}
		})
	}

	if emb, ok := rt.(*embedded.Runtime); ok {
		ln, err := api.Listen(s.socket)
		if err != nil {
			return fmt.Errorf("berth API: %w", err)
		}
		serve("berth API on "+s.socket, func() error { return api.NewServer(emb, api.WithServerLogger(log)).Serve(ctx, ln) })
		if s.dockerSocket != "" {
			dln, err := dockercompat.Listen(s.dockerSocket)
			if err != nil {
				return fmt.Errorf("docker-compatible API: %w", err)
			}
			serve("Docker-compatible API on "+s.dockerSocket, func() error {
				return dockercompat.NewServer(emb, dockercompat.WithLogger(log), dockercompat.WithVersion(buildVersion())).Serve(ctx, dln)
			})
		}
	}
	if s.listen != "" {
		ln, err := net.Listen("tcp", s.listen)
		if err != nil {
			return usagef("--listen %s: %v", s.listen, err)
		}
		srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		})
		serve("metrics on "+s.listen, func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	runDone := make(chan error, 1)
	wg.Go(func() { runDone <- d.Run(ctx, templates) })
	log.Info("berth daemon up", "version", buildVersion(), "runtime", s.runtime, "store", o.store.URL(),
		"state_dir", s.stateDir, "socket", s.socket, "docker_socket", s.dockerSocket, "listen", s.listen, "templates", len(templates))

	for {
		select {
		case <-hup:
			ts, _, err := o.sources.load()
			if err == nil {
				err = d.Reload(ctx, ts)
			}
			if err != nil {
				log.Error("configuration reload failed; keeping the running configuration", "err", err)
				continue
			}
			log.Info("configuration reloaded", "templates", len(ts))
		case err := <-fail:
			cancel()
			return exitCodeError{exitFailure, err}
		case err := <-runDone:
			cancel()
			if err != nil {
				return exitCodeError{exitFailure, err}
			}
			return nil
		case <-signalled.Done():
			return o.shutdown(rt, d, s, cancel, runDone, log)
		}
	}
}

// shutdown stops the daemon after a signal. With --stop-containers the
// containers stop first while the registrar still runs, so that their
// records drain and go rather than waiting for the lease to expire.
func (o *upOptions) shutdown(rt runtime.Runtime, d *daemon.Daemon, s settings, cancel context.CancelFunc, runDone <-chan error, log *slog.Logger) error {
	if o.stopContainers && rt != nil {
		sctx, c := context.WithTimeout(context.Background(), o.stopGrace+30*time.Second)
		defer c()
		// A second SIGINT or SIGTERM cuts the wait short.
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		go func() {
			select {
			case <-again:
				log.Warn("second signal: stopping without waiting for the containers")
				c()
			case <-sctx.Done():
			}
		}()
		cs, err := rt.List(sctx)
		if err != nil {
			log.Error("cannot list containers to stop them", "err", err)
		}
		var wg sync.WaitGroup
		for _, ctr := range cs {
			if !ctr.Running() {
				continue
			}
			wg.Go(func() {
				if err := rt.Stop(sctx, ctr.ID, o.stopGrace); err != nil {
					log.Error("cannot stop container", "container", ctr.Name, "err", err)
				}
			})
		}
		wg.Wait()
		log.Info("containers stopped; waiting for their records to drain", "drain", s.registrar.Drain)
		// The registrar sees the stop events, drains and removes the
		// records; the lease would remove them anyway, only later.
		deadline := time.Now().Add(s.registrar.Drain + 5*time.Second)
		for time.Now().Before(deadline) && sctx.Err() == nil {
			if n, _ := d.Containers(); n == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if o.removeAll {
			for _, ctr := range cs {
				if err := rt.Remove(sctx, ctr.ID, runtime.Force()); err != nil {
					log.Error("cannot remove container", "container", ctr.Name, "err", err)
				}
			}
		}
	}
	cancel()
	if err := <-runDone; err != nil {
		return exitCodeError{exitFailure, err}
	}
	if rt != nil && !o.stopContainers {
		log.Info("berth daemon stopped; its containers keep running")
	}
	return nil
}

// openRuntime opens the runtime the settings name; nil for none.
func (o *upOptions) openRuntime(ctx context.Context, s settings, log *slog.Logger) (runtime.Runtime, func(), error) {
	switch s.runtime {
	case "embedded":
		prefix, err := netip.ParsePrefix(s.subnet)
		if err != nil {
			return nil, nil, usagef("subnet %q: %v", s.subnet, err)
		}
		rt, err := embedded.New(ctx, embedded.WithStateDir(s.stateDir), embedded.WithBridge(s.bridge, prefix),
			embedded.WithCgroupParent(s.cgroupParent), embedded.WithLogger(log))
		if err != nil {
			return nil, nil, err
		}
		return rt, func() {
			_ = rt.Close()
			if o.removeAll {
				if err := rt.Network().RemoveBridge(); err != nil {
					log.Error("cannot remove the bridge", "bridge", s.bridge, "err", err)
				}
			}
		}, nil
	case "docker":
		rt, err := docker.New(ctx, docker.Config{Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return rt, func() { rt.Close() }, nil
	}
	return nil, func() {}, nil
}
