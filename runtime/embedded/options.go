package embedded

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/berthd/berth/runtime/embedded/network"
)

// Option configures New.
type Option func(*options)

type options struct {
	stateDir     string
	bridge       string
	subnet       netip.Prefix
	cgroupParent string
	log          *slog.Logger
	// initBinary is the companion container init (see WithInitBinary);
	// initBinarySet: given explicitly (an unusable one is then an error).
	initBinary    string
	initBinarySet bool
	stopDelay     time.Duration // see WithStopDelay
}

func defaults() options {
	return options{
		stateDir:     "/var/lib/berth",
		bridge:       network.DefaultBridge,
		subnet:       netip.MustParsePrefix(network.DefaultSubnet),
		cgroupParent: "berth",
		log:          slog.Default(),
	}
}

// WithStateDir sets where images, containers and allocator state live
// (default /var/lib/berth).
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithBridge sets the bridge name and subnet of the bridge network
// (default berth0 on 10.213.0.0/16).
func WithBridge(name string, subnet netip.Prefix) Option {
	return func(o *options) { o.bridge, o.subnet = name, subnet }
}

// WithCgroupParent sets the cgroup every container's cgroup is created
// under (default "berth", i.e. /sys/fs/cgroup/<controller>/berth/<mark>/<id>,
// where mark is this daemon's ownership mark: daemons may share a parent).
func WithCgroupParent(name string) Option { return func(o *options) { o.cgroupParent = name } }

// WithStopDelay makes a stop (Stop, Restart) announce itself (the kill
// event: the registrar marks the container draining, proxies with live
// endpoints stop sending it new requests at once) and wait d before the
// stop signal, so that requests in flight finish first (default 0).
func WithStopDelay(d time.Duration) Option { return func(o *options) { o.stopDelay = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithInitBinary sets the companion binary containers' init processes are
// handed over to (built from runtime/embedded/containerinit/cmd/berth-init
// with the same Go and module versions as this binary). It must be
// usable, or New fails; "" turns the companion off. By default New uses
// InitBinaryName next to the running executable when it is there and
// compatible, and otherwise logs a warning and starts containers by
// re-executing the running executable, which costs its whole package
// initialisation on every start.
func WithInitBinary(path string) Option {
	return func(o *options) { o.initBinary, o.initBinarySet = path, true }
}
