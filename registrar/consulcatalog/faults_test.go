package consulcatalog_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/registrar/consulcatalog"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/docker"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/store/memstore"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv("BERTH_CATALOG_HELPER"); addr != "" {
		helper(addr)
		return
	}
	os.Exit(m.Run())
}

// helper is a daemon in a process of its own (TestKill9): a registrar of
// one scripted container with a Consul catalog sink at addr. It prints
// the container's id and runs until it is killed.
func helper(addr string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "helper:", err); os.Exit(1) }
	rt := runtimetest.New()
	c, err := rt.Run(context.Background(), runtime.Spec{Name: "victim", Image: "web", Publish: []runtime.Port{published(80, 18080)}})
	if err != nil {
		fail(err)
	}
	cl, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		fail(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sink, err := consulcatalog.New(cl, "killed", consulcatalog.WithCheckTTL(3*time.Second), consulcatalog.WithLogger(log))
	if err != nil {
		fail(err)
	}
	reg, err := registrar.New(memstore.New(), rt, registrar.Config{Host: "killed", Sinks: []registrar.Sink{sink}, Logger: log})
	if err != nil {
		fail(err)
	}
	go sink.Run(context.Background())
	go reg.Run(context.Background())
	fmt.Println(c.ID)
	select {}
}

// TestKill9: a daemon killed with SIGKILL leaves its services; their berth
// check goes critical at its TTL and Consul itself deregisters them after
// DeregisterCriticalServiceAfter (1m, plus the agent's reap interval).
func TestKill9(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BERTH_CATALOG_HELPER="+c.Addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	id := consulcatalog.ServiceID("killed", strings.TrimSpace(line), 80, "tcp")
	eventually(t, 30*time.Second, "registered", func() bool { return checkStatus(t, cl, id+":berth") == api.HealthPassing })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cmd.Wait()
	eventually(t, 15*time.Second, "berth check critical after its TTL", func() bool { return checkStatus(t, cl, id+":berth") == api.HealthCritical })
	if _, ok := services(t, cl, "")[id]; !ok {
		t.Fatal("deregistered before DeregisterCriticalServiceAfter")
	}
	eventually(t, 150*time.Second, "deregistered by Consul", func() bool {
		_, ok := services(t, cl, "")[id]
		return !ok
	})
	if d := time.Since(killed); d < consulcatalog.MinDeregisterAfter {
		t.Errorf("deregistered %s after the kill, before DeregisterCriticalServiceAfter", d)
	}
}

// watchChecks follows the health endpoint of service with blocking
// queries and returns the statuses it saw that were not passing.
func watchChecks(t *testing.T, cl *api.Client, service string) (stop func() []string) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var bad []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		var idx uint64
		for ctx.Err() == nil {
			q := (&api.QueryOptions{WaitIndex: idx, WaitTime: 2 * time.Second}).WithContext(ctx)
			checks, meta, err := cl.Health().Checks(service, q)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			idx = meta.LastIndex
			mu.Lock()
			if len(checks) == 0 {
				bad = append(bad, "no checks")
			}
			for _, ck := range checks {
				if ck.Status != api.HealthPassing {
					bad = append(bad, ck.CheckID+"="+ck.Status)
				}
			}
			mu.Unlock()
		}
	}()
	return func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return bad
	}
}

// TestRestartTakeover: a daemon that restarts within the window finds its
// services unchanged: it does not register them again and renews their
// checks at once, so the health endpoint never shows them other than
// passing.
func TestRestartTakeover(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	rt := runtimetest.New()
	ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Env: []string{"SERVICE_TAGS=a,b", "SERVICE_X=y"},
		Health: &runtime.HealthCheck{Cmd: []string{"true"}}, Publish: []runtime.Port{published(80, 18080), published(81, 18081)}})
	rt.SetHealth(ctr.ID, runtime.HealthHealthy)
	cfg := daemonConfig{host: "h1", ttl: 9 * time.Second}
	a := startDaemon(t, c, rt, cfg)
	id := consulcatalog.ServiceID("h1", ctr.ID, 80, "tcp")
	eventually(t, 30*time.Second, "registered and healthy", func() bool { return checkStatus(t, cl, id+":health") == api.HealthPassing })
	stop := watchChecks(t, cl, "web")
	a.stop()
	time.Sleep(4 * time.Second) // a restart, well within the TTL
	b := startDaemon(t, c, rt, cfg)
	time.Sleep(2 * cfg.ttl) // past the TTL of the checks a renewed last
	if bad := stop(); len(bad) > 0 {
		t.Errorf("checks flapped during the takeover: %v", bad)
	}
	if n := b.log.Count("registered in the consul catalog"); n != 0 {
		t.Errorf("the new daemon registered %d unchanged services again:\n%s", n, b.log)
	}
	if n := b.log.Count("deregistered"); n != 0 {
		t.Errorf("the new daemon deregistered services:\n%s", b.log)
	}
	if len(services(t, cl, "berth:h1:")) != 2 {
		t.Errorf("services: %v", services(t, cl, "berth:h1:"))
	}
}

// TestConsulDown: an agent down at start is retried until it answers;
// one killed mid-run gets every service back, passing, and nothing is
// deregistered meanwhile.
func TestConsulDown(t *testing.T) {
	c := testenv.StartConsul(t)
	c.Kill()
	rt := runtimetest.New()
	ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Publish: []runtime.Port{published(80, 18080)}})
	d := startDaemon(t, c, rt, daemonConfig{host: "h1"})
	eventually(t, 30*time.Second, "the failure reported", func() bool { return d.log.Count("consul catalog sync failed") > 0 })
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	cl := client(t, c, "")
	id := consulcatalog.ServiceID("h1", ctr.ID, 80, "tcp")
	eventually(t, 60*time.Second, "registered once the agent is up", func() bool { return checkStatus(t, cl, id+":berth") == api.HealthPassing })

	// Mid-run.
	c.Kill()
	time.Sleep(3 * time.Second)
	ctr2, _ := rt.Run(t.Context(), runtime.Spec{Name: "web2", Image: "web", Publish: []runtime.Port{published(80, 18081)}})
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	id2 := consulcatalog.ServiceID("h1", ctr2.ID, 80, "tcp")
	// The agent restores the services it persisted, their TTL checks
	// critical, before berth reaches it: berth renews them at once.
	eventually(t, 30*time.Second, "both back and passing", func() bool {
		return len(services(t, cl, "berth:h1:")) == 2 && checkStatus(t, cl, id+":berth") == api.HealthPassing && checkStatus(t, cl, id2+":berth") == api.HealthPassing
	})
	if n := d.log.Count("deregistered"); n != 0 {
		t.Errorf("services deregistered during the outage:\n%s", d.log)
	}
}

// TestACL: a token without service:write is reported naming the
// permission, for each service refused; the others are registered, the
// daemon keeps running.
func TestACL(t *testing.T) {
	c := testenv.StartConsul(t, testenv.WithConsulACL("root-token"))
	admin := client(t, c, "")
	token := func(name, rules string) string {
		t.Helper()
		p, _, err := admin.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Rules: rules}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := admin.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok.SecretID
	}
	readOnly := `key_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`
	for _, tc := range []struct {
		name       string
		rules      string
		registered []string // services in the catalog
		refused    map[string]string
	}{
		{"read-only", readOnly, nil, map[string]string{"web": `service:write on "web"`, "db": `service:write on "db"`}},
		{"web-only", readOnly + "\nservice_prefix \"web\" { policy = \"write\" }", []string{"web"}, map[string]string{"db": `service:write on "db"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := runtimetest.New()
			ids := map[string]string{}
			for i, name := range []string{"web", "db"} {
				ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: name, Image: name, Publish: []runtime.Port{published(80, uint16(18080+i))}})
				ids[name] = ctr.ID
			}
			host := "acl-" + tc.name
			d := startDaemon(t, c, rt, daemonConfig{host: host, token: token(tc.name, tc.rules)})
			eventually(t, 30*time.Second, "refusals reported", func() bool { return len(d.sink.Refused()) == len(tc.refused) })
			refused := d.sink.Refused()
			for name, want := range tc.refused {
				if !strings.Contains(refused[ids[name]], want) {
					t.Errorf("%s refused with %q, want it to name %s", name, refused[ids[name]], want)
				}
			}
			eventually(t, 30*time.Second, "the allowed ones registered", func() bool { return len(services(t, admin, "berth:"+host+":")) == len(tc.registered) })
			for _, name := range tc.registered {
				id := consulcatalog.ServiceID(host, ids[name], 80, "tcp")
				if checkStatus(t, admin, id+":berth") != api.HealthPassing {
					t.Errorf("%s not registered and passing", name)
				}
			}
			if s := d.sink.Stats(); s.Refused != len(tc.refused) || s.Failing {
				t.Errorf("stats %+v", s)
			}
		})
	}
	t.Run("unknown token", func(t *testing.T) {
		rt := runtimetest.New()
		rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Publish: []runtime.Port{published(80, 18080)}})
		d := startDaemon(t, c, rt, daemonConfig{host: "acl-unknown", token: "6e0d5c4e-0000-4000-8000-000000000000"})
		eventually(t, 30*time.Second, "reported", func() bool { return d.sink.Stats().Failing })
		eventually(t, 10*time.Second, "logged", func() bool { return d.log.Count("the ACL token is not one Consul knows") > 0 })
	})
}

// TestDockerContainer: a real container (the Docker Engine) with a
// published port and SERVICE_CHECK_HTTP is registered with a passing HTTP
// check that reaches it, and deregistered when it stops.
func TestDockerContainer(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	network := testenv.DockerNetwork(t, img)
	rt, err := docker.New(t.Context(), docker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	k, v, _ := strings.Cut(img.Label, "=")
	name := "whoami-" + img.Tag()
	ctr, err := rt.Run(t.Context(), runtime.Spec{Name: name, Image: img.Ref, Network: network, Labels: map[string]string{k: v},
		Env:     []string{"SERVICE_NAME=" + name, "SERVICE_CHECK_HTTP=/", "SERVICE_CHECK_INTERVAL=1s"},
		Publish: []runtime.Port{{Port: 8080, Proto: "tcp", HostIP: "127.0.0.1", HostPort: uint16(ports[0])}}})
	if err != nil {
		t.Fatal(err)
	}
	startDaemon(t, c, rt, daemonConfig{host: "docker-" + img.Tag()})
	eventually(t, 60*time.Second, "passing in the catalog", func() bool {
		h, _, err := cl.Health().Service(name, "", true, nil)
		return err == nil && len(h) == 1 && h[0].Service.Port == ports[0]
	})
	if err := rt.Stop(t.Context(), ctr.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "deregistered after the stop", func() bool {
		h, _, err := cl.Health().Service(name, "", false, nil)
		return err == nil && len(h) == 0
	})
}
