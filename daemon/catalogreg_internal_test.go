package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/explain"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/status"
	"github.com/berthd/berth/store/memstore"
)

// TestCatalogRegistryReported: a container whose service a real Consul
// agent refuses (its ACL token may write "web" only) is reported by
// /healthz (degraded, 200, naming it and the permission), on the status
// page (the store section and its container row) and by berth explain
// (catalog_refused); the others are registered. A failing sync (the agent
// killed) is degraded with its error, not unhealthy.
func TestCatalogRegistryReported(t *testing.T) {
	c := testenv.StartConsul(t, testenv.WithConsulACL("root-token"))
	admin, err := consulapi.NewClient(&consulapi.Config{Address: c.Addr, Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := admin.ACL().PolicyCreate(&consulapi.ACLPolicy{Name: "web-only", Rules: `node_prefix "" { policy = "read" }
service_prefix "web" { policy = "write" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := admin.ACL().TokenCreate(&consulapi.ACLToken{Policies: []*consulapi.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimetest.New()
	ids := map[string]string{}
	for i, name := range []string{"web", "db"} {
		ctr, err := rt.Run(t.Context(), runtime.Spec{Name: name, Image: name, Publish: []runtime.Port{{Port: 80, Proto: "tcp", HostPort: uint16(18080 + i)}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = ctr.ID
	}
	st := memstore.New()
	d, err := New(st, rt, Config{
		Registrar: registrar.Config{Host: "h1"},
		Registry:  config.Registry{Kinds: []string{config.RegistryKV, config.RegistryConsulCatalog}, Address: c.Addr, Token: tok.SecretID, CheckTTL: 3 * time.Second},
		Logger:    slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "db refused", func() bool { r, _ := d.CatalogRefused(ctx); _, ok := r[ids["db"]]; return ok && len(r) == 1 })
	eventually(t, "web registered", func() bool {
		h, _, err := admin.Health().Service("web", "", true, nil)
		return err == nil && len(h) == 1
	})
	const permission = `service:write on "db"`

	code, rep := healthz(t, d)
	ck, ok := check(rep, "catalog")
	if code != http.StatusOK || rep.Status != StatusDegraded || !ok || !ck.OK || !ck.Degraded ||
		!strings.Contains(ck.Detail, "container db") || !strings.Contains(ck.Detail, permission) {
		t.Fatalf("/healthz %d %+v", code, rep)
	}

	v := status.Build(d.gatherStatus(ctx))
	cat := v.Store.Catalog
	if cat == nil || cat.Agent != c.Addr || cat.Failing || len(cat.Refused) != 1 || cat.Refused[0].ID != ids["db"] || cat.Refused[0].Name != "db" ||
		!strings.Contains(cat.Refused[0].Reason, permission) {
		t.Fatalf("status store.catalog %+v", cat)
	}
	if cat.Services != 1 {
		t.Errorf("status: %d services registered, want 1", cat.Services)
	}
	for _, ctr := range v.Containers {
		if refused := ctr.CatalogRefused != ""; refused != (ctr.ID == ids["db"]) {
			t.Errorf("container %s: catalog_refused %q", ctr.Name, ctr.CatalogRefused)
		}
	}

	// berth explain asks the daemon's API for the refusals.
	socket := filepath.Join(t.TempDir(), "berth.sock")
	ln, err := api.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- api.NewDeployServer(d.Deploys(), api.WithCatalogRefused(d)).Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	refused, err := api.NewClient(socket).CatalogRefused(ctx)
	if err != nil || len(refused) != 1 {
		t.Fatalf("GET /v1/catalog/refused: %v %v", refused, err)
	}
	for name, want := range map[string]bool{"db": true, "web": false} {
		r, err := explain.New(st, explain.WithRuntime(rt), explain.WithCatalogRefused(refused)).Explain(ctx, name, explain.KindContainer)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(r.Container.Reasons, func(re explain.Reason) bool { return re.Code == explain.ReasonCatalogRefused })
		if (i >= 0) != want || (want && !strings.Contains(r.Container.Reasons[i].Text, permission)) {
			t.Errorf("explain %s: reasons %+v", name, r.Container.Reasons)
		}
	}

	// The agent goes away: the sync fails, which is degraded, not unhealthy.
	c.Kill()
	eventually(t, "the sync failing reported", func() bool {
		_, rep := healthz(t, d)
		ck, _ := check(rep, "catalog")
		return strings.Contains(ck.Detail, "sync with the Consul agent")
	})
	code, rep = healthz(t, d)
	if ck, _ := check(rep, "catalog"); code != http.StatusOK || rep.Status != StatusDegraded || !ck.OK || !ck.Degraded {
		t.Errorf("/healthz with the agent down: %d %+v", code, rep)
	}
	if cat := status.Build(d.gatherStatus(ctx)).Store.Catalog; !cat.Failing || cat.Error == "" || cat.FailingSince.IsZero() {
		t.Errorf("status with the agent down: %+v", cat)
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 60s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
