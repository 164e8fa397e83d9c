package main

import (
	"cmp"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/runtime/embedded/network"
	"github.com/berthd/berth/store/backend"
)

// upOptions are the flags of berth up. Most have a [daemon] or [runtime]
// field in berth.toml, some a BERTH_* variable (see each flag's help);
// flags win over the environment, the environment over the file.
type upOptions struct {
	renderFlags

	runtime, subnet, bridge, cgroupParent  string
	hostname, socket, dockerSocket, listen string
	ttl, drain                             time.Duration
	stopContainers, removeAll              bool
	stopGrace                              time.Duration
	cluster                                daemon.ClusterSettings
	dedupListen                            string
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
--stop-containers (or --rm) is given. Stop signals within a second of the
first count as one (a terminal's Ctrl-C plus a script's SIGTERM); a later
one cuts the waits for the containers and their drain short, but --rm
still removes everything.`,
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
	f.DurationVar(&o.drain, "drain", daemon.DefaultDrain, "how long a stopped container's records stay, marked draining, before they go (0: removed at once)")
	f.DurationVar(&o.resync, "resync", 0, "reconcile the records with the containers, and re-list every watched prefix, this often (default 1m)")
	f.StringVar(&o.wait, "wait", "", `default quiescence "min[:max]" of templates that set none`)
	f.DurationVar(&o.minInterval, "min-reload-interval", 0, "default reload budget: at most one change applied per template in this interval")
	f.BoolVar(&o.stopContainers, "stop-containers", false, "stop the embedded runtime's containers when the daemon stops")
	f.BoolVar(&o.removeAll, "rm", false, "when the daemon stops, stop and remove its containers and remove the bridge: leave nothing behind (demos, CI)")
	f.DurationVar(&o.stopGrace, "stop-timeout", daemon.DefaultStopGrace, "with --stop-containers: grace period before a container is killed")
	f.BoolVar(&o.cluster.Init, "cluster-init", false, "make this host's embedded store the first member of a cluster of berth hosts")
	f.StringVar(&o.cluster.Join, "join", "", "join the cluster of the member at this URL, https://HOST:2380 (with --token)")
	f.StringVar(&o.cluster.Token, "token", "", "the cluster's join token, for --join (env BERTH_CLUSTER_TOKEN; berth cluster token prints it)")
	f.StringVar(&o.cluster.Advertise, "advertise", "", "this host's IP as other hosts reach it (env BERTH_ADVERTISE; default: a member's peer address, or none)")
	f.StringVar(&o.dedupListen, "dedup-listen", "", "host:port where this host serves dedup outputs to the other hosts (env BERTH_DEDUP_LISTEN; default: the advertise address, any free port)")
	return cmd
}

// settings turns the flags, environment and configuration file into the
// daemon's settings (templates and signals aside).
func (o *upOptions) settings(flags *pflag.FlagSet, files []*config.File) (daemon.Settings, error) {
	// The first berth.toml given holds the daemon's settings (the others
	// add templates).
	var file config.File
	if len(files) > 0 {
		file = *files[0]
	}
	s := daemon.Settings{
		Runtime:        cmp.Or(o.runtime, os.Getenv("BERTH_RUNTIME"), file.Runtime.Kind, daemon.RuntimeEmbedded),
		Subnet:         cmp.Or(o.subnet, file.Runtime.Subnet),
		Bridge:         cmp.Or(o.bridge, file.Runtime.Bridge),
		CgroupParent:   cmp.Or(o.cgroupParent, file.Runtime.CgroupParent),
		StateDir:       stateDirFor(o.store.stateDir, file),
		Socket:         cmp.Or(o.socket, os.Getenv("BERTH_HOST"), file.Daemon.Socket),
		Listen:         cmp.Or(o.listen, os.Getenv("BERTH_LISTEN"), file.Daemon.Listen),
		Status:         file.Daemon.Status,
		ACME:           file.ACME,
		DockerSocket:   cmp.Or(o.dockerSocket, os.Getenv("BERTH_DOCKER_SOCKET"), file.Daemon.DockerSocket),
		StopContainers: o.stopContainers || o.removeAll,
		Remove:         o.removeAll,
		StopGrace:      o.stopGrace,
		Version:        buildVersion(),
		Cluster:        o.cluster,
	}
	s.Daemon.CertDir = certDir(s.StateDir, files) // [certs] dir
	s.Cluster.Token = cmp.Or(s.Cluster.Token, os.Getenv("BERTH_CLUSTER_TOKEN"))
	s.Cluster.Advertise = cmp.Or(s.Cluster.Advertise, os.Getenv("BERTH_ADVERTISE"), file.Daemon.Advertise)
	s.DedupListen = cmp.Or(o.dedupListen, os.Getenv("BERTH_DEDUP_LISTEN"), file.Daemon.DedupListen)
	if s.DockerSocket != "" && s.Runtime != daemon.RuntimeEmbedded {
		return s, usagef("--docker-socket serves the embedded runtime's containers (runtime is %s)", s.Runtime)
	}
	switch s.Runtime {
	case daemon.RuntimeEmbedded, daemon.RuntimeDocker, daemon.RuntimeNone:
	default:
		return s, usagef("--runtime %q: want embedded, docker or none", s.Runtime)
	}
	if s.StopContainers && s.Runtime != daemon.RuntimeEmbedded {
		// berth does not own a Docker Engine's containers.
		return s, usagef("--stop-containers and --rm apply to the embedded runtime only (runtime is %s)", s.Runtime)
	}
	s.Daemon.Catalog = file.Catalog
	s.Daemon.Registry = file.Registry
	reg := &s.Daemon.Registrar
	if file.Prefix != "" {
		reg.Prefix = file.Prefix
	}
	reg.Host = cmp.Or(o.hostname, os.Getenv("BERTH_HOSTNAME"), file.Daemon.Host)
	reg.Network = cmp.Or(os.Getenv("BERTH_NETWORK"), file.Daemon.Network)
	for _, d := range []struct {
		name   string
		flag   time.Duration
		file   string
		target *time.Duration
	}{{"ttl", o.ttl, file.Daemon.TTL, &reg.TTL}, {"drain", o.drain, file.Daemon.Drain, &reg.Drain}, {"resync", o.resync, file.Daemon.Resync, &reg.Resync}} {
		*d.target = d.flag
		if !flags.Changed(d.name) && d.file != "" { // a flag given wins, even --drain 0
			v, err := time.ParseDuration(d.file) // validated by config.Load
			if err != nil {
				return s, usageError{err}
			}
			*d.target = v
		}
	}
	s.Daemon.Resync = reg.Resync
	s.Daemon.MinReloadInterval = o.minInterval
	w, err := o.defaultWait(file.Wait)
	if err != nil {
		return s, err
	}
	s.Daemon.DefaultWait = w
	return s, nil
}

func (o *upOptions) run(cmd *cobra.Command) error {
	log, err := commandLogger(cmd)
	if err != nil {
		return err
	}
	// Signals from the start: SIGHUP's default action would end the
	// daemon while it is still starting. The daemon reads them: SIGHUP
	// re-reads the templates, SIGINT and SIGTERM stop it (as does the end
	// of the command's context).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	templates, files, err := o.sources.load()
	if err != nil {
		return err
	}
	s, err := o.settings(cmd.Flags(), files)
	if err != nil {
		return err
	}
	o.store.useConfig(files)
	o.store.stateDir = s.StateDir
	s.StoreURL, s.StoreOptions = o.store.URL(), o.store.options(log)
	s.Templates = templates
	s.Reload = func() ([]config.Template, error) {
		ts, _, err := o.sources.load()
		return ts, err
	}
	s.Daemon.Logger = log
	s.Signals = sigs
	err = daemon.Run(cmd.Context(), s)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, daemon.ErrSettings), errors.Is(err, backend.ErrBadURL):
		return usageError{err}
	}
	return exitCodeError{exitFailure, err}
}
