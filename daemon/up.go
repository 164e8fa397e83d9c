package daemon

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
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/api/dockercompat"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
)

// Defaults of Settings.
const (
	// DefaultDrain is berth up's drain: long enough for a proxy to render
	// and reload without the stopped container (the default quiescence is
	// none, an nginx reload takes well under a second), short enough that
	// berth stop and berth up --rm stay quick. Registrar.Drain 0 means no
	// drain; only berth up's flag and file default to this.
	DefaultDrain = 2 * time.Second
	// DefaultStopGrace is how long a container stopped at shutdown
	// (StopContainers) gets before it is killed.
	DefaultStopGrace = 10 * time.Second
	// DefaultSignalWindow is how close together stop signals count as one
	// stop request: a terminal's Ctrl-C reaches the whole process group, and
	// a wrapper script that traps it and sends SIGTERM must not turn one
	// Ctrl-C into "stop without waiting".
	DefaultSignalWindow = time.Second
)

// Runtime kinds of Settings.Runtime.
const (
	RuntimeEmbedded = "embedded"
	RuntimeDocker   = "docker"
	RuntimeNone     = "none"
)

// ErrSettings marks an error in the Settings themselves (a bad subnet, an
// address that cannot be listened on), as opposed to a failure at run time.
var ErrSettings = errors.New("invalid settings")

// Settings are everything berth up runs with, after flags, environment and
// configuration file. Zero fields take the documented defaults.
type Settings struct {
	// Runtime is RuntimeEmbedded (default), RuntimeDocker (follow the
	// Docker Engine at DOCKER_HOST) or RuntimeNone (templates only).
	Runtime string
	// The embedded runtime's bridge subnet (default network.DefaultSubnet),
	// bridge name (network.DefaultBridge) and cgroup parent ("berth").
	Subnet, Bridge, CgroupParent string
	// StateDir holds the embedded runtime's state and the default embedded
	// store (default backend.DefaultStateDir()).
	StateDir string
	// StoreURL and StoreOptions open the store (backend.Open; "" is the
	// embedded store under StateDir).
	StoreURL     string
	StoreOptions []backend.Option
	// Socket is the berth API's unix socket (embedded runtime only; default
	// api.DefaultSocket); DockerSocket, if set, serves a Docker-compatible
	// API to the same containers; Listen, if set, serves /metrics and
	// /healthz on that TCP address.
	Socket, DockerSocket, Listen string
	// Status says who may read the status page on Listen (see
	// listenHandler): required for an address that is not loopback.
	Status config.Status
	// Templates are rendered from the start; Reload, called on SIGHUP,
	// returns the new set (nil: SIGHUP changes nothing).
	Templates []config.Template
	Reload    func() ([]config.Template, error)
	// Daemon configures the registrar and the runner (its Logger is the
	// daemon's logger).
	Daemon Config
	// StopContainers stops the embedded runtime's containers at shutdown
	// (each gets StopGrace, default DefaultStopGrace), waiting for their
	// records to drain; Remove also removes them and the bridge.
	StopContainers, Remove bool
	StopGrace              time.Duration
	// ACME is the [acme] table (off without a directory URL): see
	// ACMEConfig for its defaults under StateDir.
	ACME config.ACME
	// Cluster makes the embedded store a member of a cluster of hosts.
	Cluster ClusterSettings
	// DedupListen is where this host's dedup leaders serve their outputs
	// to the followers ([daemon] dedup_listen; default: the advertise
	// address, else loopback, on a free port). Listened on only when a
	// template has dedup = true.
	DedupListen string
	// Version is berth's version, for the Docker-compatible API and the log.
	Version string
	// Signals delivers SIGHUP (reload the templates), SIGINT and SIGTERM
	// (stop). A stop signal later than SignalWindow (default
	// DefaultSignalWindow) after the first stop request cuts the shutdown's
	// waits short; --rm still removes everything. Nil: only the context.
	Signals      <-chan os.Signal
	SignalWindow time.Duration
}

// withDefaults fills the zero fields.
func (s Settings) withDefaults() Settings {
	s.Runtime = cmp.Or(s.Runtime, RuntimeEmbedded)
	s.Subnet = cmp.Or(s.Subnet, network.DefaultSubnet)
	s.Bridge = cmp.Or(s.Bridge, network.DefaultBridge)
	s.CgroupParent = cmp.Or(s.CgroupParent, "berth")
	s.StateDir = cmp.Or(s.StateDir, backend.DefaultStateDir())
	s.Socket = cmp.Or(s.Socket, api.DefaultSocket)
	s.StopGrace = cmp.Or(s.StopGrace, DefaultStopGrace)
	s.SignalWindow = cmp.Or(s.SignalWindow, DefaultSignalWindow)
	s.StopContainers = s.StopContainers || s.Remove
	if s.Daemon.Logger == nil {
		s.Daemon.Logger = slog.Default()
	}
	if s.Daemon.Registrar.Version == "" {
		s.Daemon.Registrar.Version = s.Version
	}
	return s
}

func (s Settings) validate() error {
	switch s.Runtime {
	case RuntimeEmbedded, RuntimeDocker, RuntimeNone:
	default:
		return fmt.Errorf("%w: runtime %q: want embedded, docker or none", ErrSettings, s.Runtime)
	}
	if s.Runtime != RuntimeEmbedded && (s.DockerSocket != "" || s.StopContainers) {
		// berth serves and stops only the containers it owns.
		return fmt.Errorf("%w: a Docker-compatible socket and stopping or removing containers apply to the embedded runtime only (runtime is %s)", ErrSettings, s.Runtime)
	}
	// Token files are read before anything is created (the runtime's
	// bridge), so that a missing one leaves nothing behind.
	if s.Daemon.Registry.Has(config.RegistryConsulCatalog) {
		if _, err := s.Daemon.Registry.ReadToken(); err != nil {
			return fmt.Errorf("%w: %v", ErrSettings, err)
		}
	}
	if s.Daemon.Catalog.Enabled() {
		if _, err := s.Daemon.Catalog.ReadToken(); err != nil {
			return fmt.Errorf("%w: %v", ErrSettings, err)
		}
	}
	return nil
}

// storeURL is the store's URL as the log shows it.
func (s Settings) storeURL() string {
	return cmp.Or(s.StoreURL, "embedded://"+filepath.Join(s.StateDir, "store"))
}

// Run is berth up: it opens the runtime and the store, registers the
// containers, keeps the templates rendered and serves the APIs until ctx
// ends or a stop signal arrives, then shuts down (see Settings). It returns
// nil after a requested stop; an error wrapping ErrSettings for unusable
// settings; another error when the daemon cannot start or fails for good.
func Run(ctx context.Context, s Settings) error {
	s = s.withDefaults()
	if err := s.validate(); err != nil {
		return err
	}
	log := s.Daemon.Logger
	// ctx ending is a stop request like a signal; the daemon itself runs on
	// a context of its own, so that shutdown can still drain containers
	// through it.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	// The runtime first: with the embedded one, an unusable host (not
	// root, no overlayfs, no cgroups) is the likeliest error.
	rt, closeRT, err := openRuntime(rctx, s, log)
	if err != nil {
		return err
	}
	defer closeRT()

	advertise, joinAddr, err := prepareCluster(rctx, s, log)
	if err != nil {
		return err
	}
	s.Daemon.Registrar.Advertise = advertise
	st, err := backend.Open(rctx, s.StoreURL, append(s.StoreOptions, backend.WithStateDir(s.StateDir), backend.WithLogger(log))...)
	if err != nil {
		return err
	}
	// A daemon that stops and leaves its containers running leaves their
	// records to the lease: a restart within the TTL takes them over, so
	// proxies never see them go; otherwise they expire. Close would revoke
	// the lease and remove them at once.
	defer func() {
		if dt, ok := st.(store.Detacher); ok && !s.StopContainers {
			_ = dt.Detach()
			return
		}
		_ = st.Close()
	}()

	if s.ACME.DirectoryURL != "" {
		c, err := ACMEConfig(s.ACME, s.StateDir, s.Daemon.Registrar.Prefix, s.Daemon.Registrar.Host)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSettings, err)
		}
		if s.ACME.CertsDir == "" && s.Daemon.CertDir != "" {
			c.CertsDir = s.Daemon.CertDir // [certs] dir: the directory the templates read
		}
		s.Daemon.ACME, s.Daemon.ACMEChallengeListen = &c, s.ACME.ChallengeListen
	}
	if dedupUsed(s.Templates) {
		ln, adv, err := dedupListener(s.DedupListen, advertise)
		if err != nil {
			return err
		}
		defer ln.Close()
		s.Daemon.DedupListener, s.Daemon.DedupAdvertise = ln, adv
	}
	d, err := New(st, rt, s.Daemon)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait: the servers stop when rctx ends
	fail := make(chan error, 4)
	serve := func(what string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil && rctx.Err() == nil {
				fail <- fmt.Errorf("%s: %w", what, err)
			}
		})
	}
	socket := "" // the API socket, when this daemon serves one (none without a runtime)
	if emb, ok := rt.(*embedded.Runtime); ok {
		socket = s.Socket
		ln, err := api.Listen(s.Socket)
		if err != nil {
			return fmt.Errorf("berth API: %w", err)
		}
		ai := api.DaemonInfo(s.StateDir, s.StoreURL, s.Daemon.Registrar.Prefix) // where store commands with -H go
		ai.Catalog = api.CatalogOf(s.Daemon.Catalog)                            // and berth render's catalog functions
		info := api.WithInfo(ai)
		serve("berth API on "+s.Socket, func() error {
			return api.NewServer(emb, api.WithServerLogger(log), info, d.DeployAPI(), api.WithTemplates(d), api.WithCatalogRefused(d)).Serve(rctx, ln)
		})
		if s.DockerSocket != "" {
			dln, err := dockercompat.Listen(s.DockerSocket)
			if err != nil {
				return fmt.Errorf("docker-compatible API: %w", err)
			}
			serve("Docker-compatible API on "+s.DockerSocket, func() error {
				return dockercompat.NewServer(emb, dockercompat.WithLogger(log), dockercompat.WithVersion(s.Version)).Serve(rctx, dln)
			})
		}
	} else if d.Deploys() != nil { // a Docker Engine's containers: the deploy API alone
		socket = s.Socket
		ln, err := api.Listen(s.Socket)
		if err != nil {
			return fmt.Errorf("berth API: %w", err)
		}
		serve("berth API on "+s.Socket, func() error {
			return api.NewDeployServer(d.Deploys(), api.WithServerLogger(log), api.WithTemplates(d), api.WithCatalogRefused(d)).Serve(rctx, ln)
		})
	}
	if joinAddr != "" {
		serve("cluster join service on "+joinAddr, func() error { return serveJoins(rctx, st, s.embeddedDir(), joinAddr, log) })
	}
	if s.Listen != "" {
		ln, err := net.Listen("tcp", s.Listen)
		if err != nil {
			return fmt.Errorf("%w: listen %s: %v", ErrSettings, s.Listen, err)
		}
		h, err := d.listenHandler(s) // /metrics, /healthz and the status page
		if err != nil {
			_ = ln.Close()
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			<-rctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			defer c()
			_ = srv.Shutdown(sctx)
		})
		serve("metrics on "+s.Listen, func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	runDone := make(chan error, 1)
	wg.Go(func() { runDone <- d.Run(rctx, s.Templates) })
	log.Info("berth daemon up", "version", s.Version, "runtime", s.Runtime, "store", s.storeURL(),
		"state_dir", s.StateDir, "socket", socket, "docker_socket", s.DockerSocket, "listen", s.Listen, "templates", len(s.Templates))

	for {
		select {
		case sig := <-s.Signals:
			if sig != syscall.SIGHUP {
				return shutdown(rt, d, s, cancel, runDone)
			}
			if s.Reload == nil {
				continue
			}
			ts, err := s.Reload()
			if err == nil {
				err = d.Reload(rctx, ts)
			}
			if err != nil {
				log.Error("configuration reload failed; keeping the running configuration", "err", err)
				continue
			}
			log.Info("configuration reloaded", "templates", len(ts))
		case err := <-fail:
			return err
		case err := <-runDone:
			return err
		case <-ctx.Done():
			return shutdown(rt, d, s, cancel, runDone)
		}
	}
}

// hurried returns a context that ends when a stop signal arrives more than
// window after the first stop request (now, on the clock now): one Ctrl-C
// that reaches the whole process group, plus the SIGTERM of a script that
// traps it, is one request. Call cancel when the shutdown is over.
func hurried(sigs <-chan os.Signal, window time.Duration, now func() time.Time, log *slog.Logger) (context.Context, context.CancelFunc) {
	first := now()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					continue // no reload while stopping
				}
				if now().Sub(first) <= window {
					log.Debug("stop signal within the window of the first: the same stop request", "signal", sig)
					continue
				}
				log.Warn("second stop signal: stopping without waiting for the containers", "signal", sig)
				cancel()
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, cancel
}

// cleanupTimeout bounds the removals of --rm after a hurried stop.
const cleanupTimeout = 30 * time.Second

// shutdown stops the daemon after a stop request. With StopContainers the
// containers stop first while the registrar still runs, so that their
// records drain and go rather than waiting for the lease to expire.
func shutdown(rt runtime.Runtime, d *Daemon, s Settings, cancel context.CancelFunc, runDone <-chan error) error {
	log := s.Daemon.Logger
	if s.StopContainers && rt != nil {
		d.stopDeploys() // its replica keeper would restart what this stops
		hctx, stopHurry := hurried(s.Signals, s.SignalWindow, time.Now, log)
		defer stopHurry()
		sctx, c := context.WithTimeout(hctx, s.StopGrace+30*time.Second)
		defer c()
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
				err := rt.Stop(sctx, ctr.ID, s.StopGrace)
				if sctx.Err() != nil {
					// Cut short: kill it now rather than leave it running.
					kctx, c := context.WithTimeout(context.Background(), cleanupTimeout)
					defer c()
					err = rt.Stop(kctx, ctr.ID, 0)
				}
				if err != nil {
					log.Error("cannot stop container", "container", ctr.Name, "err", err)
				}
			})
		}
		wg.Wait()
		log.Info("containers stopped; waiting for their records to drain", "drain", s.Daemon.Registrar.Drain)
		// The registrar sees the stop events, drains and removes the
		// records; the lease would remove them anyway, only later.
		deadline := time.Now().Add(s.Daemon.Registrar.Drain + 5*time.Second)
		for time.Now().Before(deadline) && sctx.Err() == nil {
			if n, _ := d.Containers(); n == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if s.Remove {
			// On a context of its own: a second signal cuts the waits
			// short, never the clean-up.
			rctx, c := context.WithTimeout(context.Background(), cleanupTimeout)
			defer c()
			for _, ctr := range cs {
				// A container started with --rm may already be gone.
				if err := rt.Remove(rctx, ctr.ID, runtime.Force()); err != nil && !errors.Is(err, runtime.ErrNotFound) {
					log.Error("cannot remove container", "container", ctr.Name, "err", err)
				}
			}
		}
	}
	cancel()
	if err := <-runDone; err != nil {
		return err
	}
	if rt != nil && !s.StopContainers {
		log.Info("berth daemon stopped; its containers keep running")
	}
	return nil
}

// openRuntime opens the runtime the settings name; nil for none.
func openRuntime(ctx context.Context, s Settings, log *slog.Logger) (runtime.Runtime, func(), error) {
	switch s.Runtime {
	case RuntimeEmbedded:
		prefix, err := netip.ParsePrefix(s.Subnet)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: subnet %q: %v", ErrSettings, s.Subnet, err)
		}
		rt, err := embedded.New(ctx, embedded.WithStateDir(s.StateDir), embedded.WithBridge(s.Bridge, prefix),
			embedded.WithCgroupParent(s.CgroupParent), embedded.WithLogger(log), embedded.WithStopDelay(liveDrain(s)))
		if err != nil {
			return nil, nil, err
		}
		return rt, func() {
			_ = rt.Close()
			if s.Remove {
				if err := rt.Network().RemoveBridge(); err != nil {
					log.Error("cannot remove the bridge", "bridge", s.Bridge, "err", err)
				}
			}
		}, nil
	case RuntimeDocker:
		rt, err := docker.New(ctx, docker.Config{Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return rt, func() { rt.Close() }, nil
	}
	return nil, func() {}, nil
}

// liveDrain is how long a stop waits between the kill event and the stop
// signal: the registrar's drain when a template applies endpoints live
// (issue #15: drain first, then stop), else 0.
func liveDrain(s Settings) time.Duration {
	for _, t := range s.Templates {
		if t.Live != "" {
			return s.Daemon.Registrar.Drain
		}
	}
	return 0
}
