package daemon

import (
	"cmp"
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
// TTL) under <prefix>dedup/; the others read the keys others gives them
// (nil: their prefixes), each opened by open when it returns a source, or
// else a mirror of the prefix.
func (d *Daemon) dedupSources(st store.Store, mopts []watcher.MirrorOption, others func(config.Template) []string, open func(string) runner.Source) runner.Option {
	rc := d.cfg.Registrar
	prefix := strings.TrimSuffix(cmp.Or(rc.Prefix, records.DefaultPrefix), "/") + "/dedup/"
	mopts = append([]watcher.MirrorOption{watcher.WithLogger(d.log)}, mopts...)
	dd := dedup.New(st, dedup.WithTTL(cmp.Or(rc.TTL, registrar.DefaultTTL)), dedup.WithHost(rc.Host),
		dedup.WithLogger(d.log), dedup.WithPrefix(prefix), dedup.WithMirrorOptions(mopts...))
	return runner.WithSources(dd.Sources(others, func(key string) runner.Source {
		if open != nil {
			if src := open(key); src != nil {
				return src
			}
		}
		return watcher.NewMirror(st, key, mopts...)
	}))
}
