package daemon

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar/consulcatalog"
	"github.com/berthd/berth/status"
)

// catalogRegistry is the Consul catalog sink of [registry] kind
// "consul-catalog", as Health, the status page and berth explain see it.
type catalogRegistry struct {
	sink  *consulcatalog.Sink
	agent string
}

// CatalogRefused is the containers (by id) with a service the Consul
// agent refused, and why (nil without a catalog registry), for berth
// explain (api.WithCatalogRefused).
func (d *Daemon) CatalogRefused(context.Context) (map[string]string, error) {
	if d.catReg == nil {
		return nil, nil
	}
	return d.catReg.sink.Refused(), nil
}

// catalogCheck is Health's check of the catalog registry (false: none):
// degraded, not failed, while the sync fails (the services stay as they
// are, and the templates do not need it) or the agent refuses a
// container's service (the others are registered).
func (d *Daemon) catalogCheck(ctx context.Context, now time.Time) (Check, bool) {
	if d.catReg == nil {
		return Check{}, false
	}
	st := d.catReg.sink.Stats()
	c := Check{Name: "catalog", OK: true}
	var details []string
	if st.Failing {
		c.Degraded = true
		details = append(details, fmt.Sprintf("sync with the Consul agent %s failing for %s (services stay as they are; retrying): %v",
			d.catReg.agent, now.Sub(st.FailingSince).Round(time.Second), st.Err))
	}
	refused := d.catReg.sink.Refused()
	names := d.containerNames(ctx, len(refused) > 0)
	for _, id := range slices.Sorted(maps.Keys(refused)) {
		c.Degraded = true
		details = append(details, fmt.Sprintf("the agent refused the service of container %s: %s", cmp.Or(names[id], records.Truncate(id)), refused[id]))
	}
	c.Detail = strings.Join(details, "; ")
	return c, true
}

// catalogStatus is the status page's view of the catalog registry (nil:
// none).
func (d *Daemon) catalogStatus(ctx context.Context) *status.Catalog {
	if d.catReg == nil {
		return nil
	}
	st := d.catReg.sink.Stats()
	out := &status.Catalog{Agent: d.catReg.agent, Services: st.Services, Failing: st.Failing, FailingSince: st.FailingSince}
	if st.Err != nil {
		out.Error = st.Err.Error()
	}
	refused := d.catReg.sink.Refused()
	names := d.containerNames(ctx, len(refused) > 0)
	for id, why := range refused {
		out.Refused = append(out.Refused, status.Refusal{ID: id, Name: names[id], Reason: why})
	}
	return out
}

// containerNames is the runtime's container names by id, when want (nil
// otherwise, or when the runtime does not answer).
func (d *Daemon) containerNames(ctx context.Context, want bool) map[string]string {
	if !want || d.rt == nil {
		return nil
	}
	cs, err := d.rt.List(ctx)
	if err != nil {
		return nil
	}
	names := make(map[string]string, len(cs))
	for _, c := range cs {
		names[c.ID] = strings.TrimPrefix(c.Name, "/")
	}
	return names
}
