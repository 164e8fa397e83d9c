package consulcatalog_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/registrar/consulcatalog"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store/memstore"
)

// client is an API client of agent c with token ("": the agent's
// management token, if any).
func client(t testing.TB, c *testenv.Consul, token string) *api.Client {
	t.Helper()
	if token == "" {
		token = c.Token
	}
	cl, err := api.NewClient(&api.Config{Address: c.Addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// daemon is one registrar with a Consul catalog sink, as berth up runs
// them.
type daemon struct {
	sink *consulcatalog.Sink
	reg  *registrar.Registrar
	log  *testenv.SyncBuffer
	stop func() // ends both without deregistering (a daemon that stops or dies)
}

type daemonConfig struct {
	host      string
	token     string // "": the agent's
	drain     time.Duration
	advertise string
	ttl       time.Duration // check TTL (default 6s)
	resync    time.Duration
}

func startDaemon(t testing.TB, c *testenv.Consul, rt runtime.Runtime, cfg daemonConfig) *daemon {
	t.Helper()
	buf := &testenv.SyncBuffer{}
	var w io.Writer = buf
	if testing.Verbose() {
		w = io.MultiWriter(buf, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if cfg.ttl == 0 {
		cfg.ttl = 6 * time.Second
	}
	sink, err := consulcatalog.New(client(t, c, cfg.token), cfg.host, consulcatalog.WithLogger(log), consulcatalog.WithCheckTTL(cfg.ttl))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registrar.New(memstore.New(), rt, registrar.Config{
		Host: cfg.host, Drain: cfg.drain, Advertise: cfg.advertise, Resync: cfg.resync,
		Sinks: []registrar.Sink{sink}, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { sink.Run(ctx); done <- struct{}{} }()
	go func() { reg.Run(ctx); done <- struct{}{} }()
	stopped := false
	d := &daemon{sink: sink, reg: reg, log: buf}
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		<-done
	}
	t.Cleanup(d.stop)
	return d
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// services returns the agent's services whose ID starts with prefix.
func services(t testing.TB, cl *api.Client, prefix string) map[string]*api.AgentService {
	t.Helper()
	all, err := cl.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*api.AgentService{}
	for id, s := range all {
		if strings.HasPrefix(id, prefix) {
			out[id] = s
		}
	}
	return out
}

// checkStatus is the status of an agent check ("" when it does not exist).
func checkStatus(t testing.TB, cl *api.Client, id string) string {
	t.Helper()
	all, err := cl.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := all[id]; ok {
		return c.Status
	}
	return ""
}

func published(port, host uint16) runtime.Port {
	return runtime.Port{Port: port, Proto: "tcp", HostIP: "0.0.0.0", HostPort: host}
}
