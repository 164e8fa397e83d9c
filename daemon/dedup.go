package daemon

import (
	"cmp"
	"fmt"
	"net"
	"strings"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/dedup"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/watcher"
)

// dedupSources are the runner's sources: the templates with dedup = true
// share one render among the daemons of the store (package dedup), with
// a lock that lives as long as this daemon's records (the registrar's
// TTL) under <prefix>dedup/, the outputs served to the followers on
// Config.DedupListener when it is set; the others read the keys others
// gives them (nil: their prefixes), each opened by open when it returns a
// source, or else a mirror of the prefix. It sets d.dedup, which Run runs.
func (d *Daemon) dedupSources(st store.Store, mopts []watcher.MirrorOption, others func(config.Template) []string, open func(string) runner.Source) runner.Option {
	rc := d.cfg.Registrar
	prefix := strings.TrimSuffix(cmp.Or(rc.Prefix, records.DefaultPrefix), "/") + "/dedup/"
	mopts = append([]watcher.MirrorOption{watcher.WithLogger(d.log)}, mopts...)
	dopts := []dedup.Option{dedup.WithTTL(cmp.Or(rc.TTL, registrar.DefaultTTL)), dedup.WithHost(rc.Host),
		dedup.WithLogger(d.log), dedup.WithPrefix(prefix), dedup.WithMirrorOptions(mopts...)}
	if d.cfg.DedupListener != nil {
		dopts = append(dopts, dedup.WithPeers(d.cfg.DedupListener, d.cfg.DedupAdvertise))
	}
	d.dedup = dedup.New(st, dopts...)
	return runner.WithSources(d.dedup.Sources(others, func(key string) runner.Source {
		if open != nil {
			if src := open(key); src != nil {
				return src
			}
		}
		return watcher.NewMirror(st, key, mopts...)
	}))
}

// dedupUsed reports whether a template shares its render (dedup = true).
func dedupUsed(ts []config.Template) bool {
	for _, t := range ts {
		if t.Dedup {
			return true
		}
	}
	return false
}

// dedupListener listens where this host's dedup leaders serve their
// outputs: listen ("host:port"), by default the advertise address (else
// loopback) on a free port; the port is published in the lock record, so
// any will do. It returns the address the followers are told: the
// listener's, with the advertise address (else loopback) for a host
// that listens on all addresses.
func dedupListener(listen, advertise string) (net.Listener, string, error) {
	host := cmp.Or(advertise, "127.0.0.1")
	if listen == "" {
		listen = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, "", fmt.Errorf("%w: dedup listen address %q (--dedup-listen, BERTH_DEDUP_LISTEN or [daemon] dedup_listen; default the advertise address, any port): %v", ErrSettings, listen, err)
	}
	h, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
		h = host
	}
	return ln, net.JoinHostPort(h, port), nil
}
