package daemon

import (
	"context"
	"slices"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/explain"
)

// Templates is the daemon's current templates (after the last reload) and
// what each last did, for berth explain and berth plan (api.WithTemplates).
func (d *Daemon) Templates(ctx context.Context) ([]explain.TemplateState, error) {
	d.mu.Lock()
	ts := slices.Clone(d.templates)
	d.mu.Unlock()
	sts, err := d.runner.Status(ctx)
	if err != nil {
		return nil, err
	}
	return explain.States(ts, sts), nil
}

// setTemplates records the templates the runner was given.
func (d *Daemon) setTemplates(ts []config.Template) {
	d.mu.Lock()
	d.templates = slices.Clone(ts)
	d.mu.Unlock()
}
