package catalog

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
)

// FromConfig returns the catalog a [catalog] table configures (with its
// defaults from [registry], config.Catalog.FromRegistry); its
// queries stop when ctx ends or when the last view reading them lets go.
func FromConfig(ctx context.Context, c config.Catalog, log *slog.Logger) (*Catalog, error) {
	wait, err := c.WaitTime()
	if err != nil {
		return nil, err
	}
	token, err := c.ReadToken()
	if err != nil {
		return nil, err
	}
	client, err := newClient(c.Address, token, c.Datacenter)
	if err != nil {
		return nil, err
	}
	return New(ctx, client, WithLogger(log), WithWait(wait)), nil
}

// keyPrefix starts the source key of a template's catalog view.
const keyPrefix = "consul-catalog:"

// Keys are the source keys of template t with a catalog (runner.WithSources):
// its store prefixes and, for a native template, its catalog view, named
// by the template and its max_stale. A template's view lives as long as
// a template of its name and max_stale runs.
func Keys(t config.Template) []string {
	keys := append([]string(nil), t.Prefixes...)
	if t.Options.Dialect == dialect.Native || t.Options.Dialect == "" {
		keys = append(keys, keyPrefix+t.Name+"|"+t.MaxStale.String())
	}
	return keys
}

// Open returns the view a key of Keys names, and nil for the other keys
// (the runner's default store mirror), for runner.WithSources.
func (c *Catalog) Open(key string) runner.Source {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return nil
	}
	i := strings.LastIndexByte(rest, '|')
	stale, err := time.ParseDuration(rest[i+1:])
	if err != nil {
		stale = 0 // not a key of Keys; read from the leader
	}
	return c.View(key, stale)
}
