package registrar_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
)

// TestHostileMetadataDocker runs real Docker Engine containers with
// hostile metadata in their environment and labels: each bad value is left
// out of the records and reported on the instance record, the good ones
// stay, no key escapes the schema, the registrar counts what it left out,
// and a good container started afterwards is registered as usual.
func TestHostileMetadataDocker(t *testing.T) {
	e := newEnv(t)
	cfg := registrar.Config{Host: e.host, Prefix: e.prefix, TTL: 5 * time.Second, Resync: time.Hour,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	r, err := registrar.New(e.server, e.rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	bad := e.run(t, "hostile", func(s *runtime.Spec) {
		s.Labels["berth.service"] = registrar.HostileService
		s.Env = append(s.Env, registrar.HostileEnv()...)
	})
	in := e.instance(t, "berth-test-whoami", bad, func(in records.Instance) bool { return len(in.Invalid) > 0 })
	ckv, err := e.server.Get(t.Context(), records.ContainerKey(e.prefix, e.host, bad.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rc records.Container
	if err := json.Unmarshal(ckv.Value, &rc); err != nil {
		t.Fatal(err)
	}
	if want := registrar.CheckHostile(t, in, rc, bad.IP); r.InvalidFields() < want {
		t.Errorf("InvalidFields() = %d, want at least %d", r.InvalidFields(), want)
	}

	// A good container after the bad one: registered, nothing reported.
	late := e.run(t, "late", func(s *runtime.Spec) {
		s.Labels["berth.service"] = "late"
		s.Env = append(s.Env, "VIRTUAL_HOST=late.localhost")
	})
	if in := e.instance(t, "late", late, nil); in.Env["VIRTUAL_HOST"] != "late.localhost" || len(in.Invalid) != 0 {
		t.Errorf("good container: %+v", in)
	}

	kvs, _, err := e.server.List(t.Context(), e.prefix+"/")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		k, err := records.ParseKey(e.prefix, kv.Key)
		if err != nil || strings.Contains(kv.Key, "evil") || (k.Kind == records.KindService && records.CheckService(k.Service) != nil) {
			t.Errorf("key %q outside the schema (%v)", kv.Key, err)
		}
	}
}
