package consulcatalog_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/registrar/consulcatalog"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
)

// TestRegister: each published port of a running container is one agent
// service with berth's ID, the record's name, tags, meta, address, port and
// checks; unpublished ports, stopped and ignored containers have none.
func TestRegister(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	rt := runtimetest.New()
	web, err := rt.Run(t.Context(), runtime.Spec{Name: "web-1", Image: "example/web:1.2",
		Env:     []string{"SERVICE_NAME=web", "SERVICE_TAGS=blue,v1", "SERVICE_REGION=eu", "SERVICE_9090_NAME=web-admin", "SERVICE_9090_TAGS=admin", "SERVICE_8080_CHECK_TCP=true"},
		Publish: []runtime.Port{published(8080, 18080), published(9090, 19090), {Port: 7070, Proto: "tcp"}, {Port: 53, Proto: "udp", HostIP: "0.0.0.0", HostPort: 10053}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Run(t.Context(), runtime.Spec{Name: "ignored", Image: "x", Env: []string{"SERVICE_IGNORE=true"}, Publish: []runtime.Port{published(80, 18081)}}); err != nil {
		t.Fatal(err)
	}
	stopped, _ := rt.Add(runtime.Spec{Name: "stopped", Image: "x", Publish: []runtime.Port{published(80, 18082)}})
	startDaemon(t, c, rt, daemonConfig{host: "h1", advertise: "127.0.0.1"})

	prefix := "berth:h1:"
	eventually(t, 30*time.Second, "3 services of web-1", func() bool { return len(services(t, cl, prefix)) == 3 })
	got := services(t, cl, prefix)
	for _, tc := range []struct {
		port  int
		proto string
		name  string
		host  int
		tags  []string
		check string // a label check's id suffix, or ""
	}{
		{8080, "tcp", "web", 18080, []string{"blue", "v1"}, "tcp"},
		{9090, "tcp", "web-admin", 19090, []string{"admin"}, ""},
		{53, "udp", "web", 10053, []string{"blue", "v1"}, ""},
	} {
		t.Run(fmt.Sprintf("%d/%s", tc.port, tc.proto), func(t *testing.T) {
			id := consulcatalog.ServiceID("h1", web.ID, tc.port, tc.proto)
			s, ok := got[id]
			if !ok {
				t.Fatalf("no service %s among %v", id, slices.Collect(func(y func(string) bool) {
					for k := range got {
						y(k)
					}
				}))
			}
			if s.Service != tc.name || s.Port != tc.host || s.Address != "127.0.0.1" || !slices.Equal(s.Tags, tc.tags) {
				t.Errorf("service %s = name %q port %d address %q tags %v; want %q %d 127.0.0.1 %v", id, s.Service, s.Port, s.Address, s.Tags, tc.name, tc.host, tc.tags)
			}
			for k, v := range map[string]string{consulcatalog.MetaHost: "h1", consulcatalog.MetaContainer: web.ID, consulcatalog.MetaContainerName: "web-1",
				consulcatalog.MetaImage: "example/web:1.2", consulcatalog.MetaPort: fmt.Sprint(tc.port), consulcatalog.MetaProto: tc.proto, "region": "eu"} {
				if s.Meta[k] != v {
					t.Errorf("meta %s = %q, want %q", k, s.Meta[k], v)
				}
			}
			if s.Meta[consulcatalog.MetaDef] == "" {
				t.Error("no definition hash in meta")
			}
			if st := checkStatus(t, cl, id+":berth"); st != api.HealthPassing {
				t.Errorf("berth check = %q, want passing", st)
			}
			if tc.check != "" && checkStatus(t, cl, id+":"+tc.check) == "" {
				t.Errorf("no %s check", tc.check)
			}
			if st := checkStatus(t, cl, id+":health"); st != "" {
				t.Errorf("a container without a health check has a health check (%q)", st)
			}
		})
	}
	// Its deregistration follows a stop; a start registers the stopped one.
	if err := rt.Start(stopped.ID); err != nil {
		t.Fatal(err)
	}
	if err := rt.Stop(t.Context(), web.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "only the started container", func() bool {
		s := services(t, cl, prefix)
		_, ok := s[consulcatalog.ServiceID("h1", stopped.ID, 80, "tcp")]
		return len(s) == 1 && ok
	})
}

// TestHealthTransitions: the container's health drives its health check,
// passing → critical → passing (starting is warning), without
// re-registering the service.
func TestHealthTransitions(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	rt := runtimetest.New()
	ctr, err := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Health: &runtime.HealthCheck{Cmd: []string{"true"}},
		Publish: []runtime.Port{published(80, 18080)}})
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, c, rt, daemonConfig{host: "h1"})
	id := consulcatalog.ServiceID("h1", ctr.ID, 80, "tcp")
	for i, step := range []struct {
		health runtime.Health
		want   string
	}{
		{"", api.HealthWarning}, // starting
		{runtime.HealthHealthy, api.HealthPassing},
		{runtime.HealthUnhealthy, api.HealthCritical},
		{runtime.HealthHealthy, api.HealthPassing},
	} {
		if step.health != "" {
			if err := rt.SetHealth(ctr.ID, step.health); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 30*time.Second, fmt.Sprintf("step %d: health check %s", i, step.want), func() bool {
			return checkStatus(t, cl, id+":health") == step.want
		})
		if st := checkStatus(t, cl, id+":berth"); st != api.HealthPassing {
			t.Errorf("step %d: berth check %q", i, st)
		}
	}
	if n := d.log.Count("registered in the consul catalog"); n != 1 {
		t.Errorf("registered %d times, want once (health changes only update the check)\n%s", n, d.log)
	}
	eventually(t, 30*time.Second, "passing in the catalog's health endpoint", func() bool {
		h, _, err := cl.Health().Service("web", "", true, nil)
		return err == nil && len(h) == 1
	})
}

// TestOrphans: at start (and every resync) this host's services without a
// container are removed and missing ones registered; another host's
// services and services berth did not register are kept.
func TestOrphans(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	register := func(id, name string, meta map[string]string) {
		t.Helper()
		if err := cl.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: name, Port: 1, Meta: meta}); err != nil {
			t.Fatal(err)
		}
	}
	orphan := consulcatalog.ServiceID("h1", "0123456789ab", 80, "tcp")
	register(orphan, "web", map[string]string{consulcatalog.MetaHost: "h1"})
	other := consulcatalog.ServiceID("h2", "0123456789ab", 80, "tcp")
	register(other, "web", map[string]string{consulcatalog.MetaHost: "h2"})
	// Looks like h1's by its ID, but its meta says otherwise: not touched.
	register("berth:h1:lookalike:80", "web", map[string]string{consulcatalog.MetaHost: "h1:lookalike"})
	register("redis-1", "redis", nil)

	rt := runtimetest.New()
	ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Publish: []runtime.Port{published(80, 18080)}})
	d := startDaemon(t, c, rt, daemonConfig{host: "h1", resync: time.Second})
	mine := consulcatalog.ServiceID("h1", ctr.ID, 80, "tcp")
	eventually(t, 30*time.Second, "orphan removed, container registered", func() bool {
		s := services(t, cl, "")
		_, o := s[orphan]
		_, m := s[mine]
		return !o && m
	})
	s := services(t, cl, "")
	for _, keep := range []string{other, "berth:h1:lookalike:80", "redis-1"} {
		if _, ok := s[keep]; !ok {
			t.Errorf("%s was removed", keep)
		}
	}
	// Missing from the agent (removed behind berth's back): the resync
	// registers it again.
	if err := cl.Agent().ServiceDeregister(mine); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "registered again at resync", func() bool {
		_, ok := services(t, cl, "")[mine]
		return ok
	})
	_ = d
}

// TestDrainMaintenance: a stop signal puts the container's services in
// maintenance for the drain, then removes them.
func TestDrainMaintenance(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	rt := runtimetest.New()
	ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Publish: []runtime.Port{published(80, 18080)}})
	rt.SetBehavior(ctr.ID, runtimetest.Behavior{IgnoreStop: true})
	startDaemon(t, c, rt, daemonConfig{host: "h1", drain: 8 * time.Second})
	id := consulcatalog.ServiceID("h1", ctr.ID, 80, "tcp")
	eventually(t, 30*time.Second, "registered", func() bool { return checkStatus(t, cl, id+":berth") == api.HealthPassing })
	if err := rt.Kill(ctr.ID, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "in maintenance", func() bool {
		return checkStatus(t, cl, "_service_maintenance:"+id) == api.HealthCritical
	})
	if _, ok := services(t, cl, "")[id]; !ok {
		t.Fatal("removed before its drain ended")
	}
	eventually(t, 5*time.Second, "out of the passing instances", func() bool {
		h, _, err := cl.Health().Service("web", "", true, nil)
		return err == nil && len(h) == 0
	})
	if _, ok := services(t, cl, "")[id]; !ok {
		t.Fatal("removed before its drain ended")
	}
	rt.Exit(ctr.ID, 0)
	eventually(t, 30*time.Second, "removed after the drain", func() bool {
		_, ok := services(t, cl, "")[id]
		return !ok
	})
}

// TestBadCheckLabels: check labels that do not parse are reported and
// left out; the service is registered with its other checks. A good HTTP
// check reaches the port through the advertised address.
func TestBadCheckLabels(t *testing.T) {
	c := testenv.StartConsul(t)
	cl := client(t, c, "")
	ip, port := testenv.HTTPBackend(t, "web")
	rt := runtimetest.New()
	cases := []struct {
		name   string
		env    []string
		checks []string // label check kinds registered
		report string   // in the log
	}{
		{"good-http", []string{"SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_INTERVAL=1s"}, []string{"http"}, ""},
		{"bad-interval", []string{"SERVICE_CHECK_HTTP=/health", "SERVICE_CHECK_INTERVAL=often"}, []string{"http"}, `SERVICE_CHECK_INTERVAL=\"often\"`},
		{"bad-path", []string{"SERVICE_CHECK_HTTP=health check", "SERVICE_CHECK_TCP=true"}, []string{"tcp"}, `SERVICE_CHECK_HTTP=\"health check\"`},
		{"bad-tcp", []string{"SERVICE_CHECK_TCP=maybe"}, nil, `SERVICE_CHECK_TCP=\"maybe\"`},
		{"bad-timeout", []string{"SERVICE_CHECK_TCP=true", "SERVICE_CHECK_TIMEOUT=-1s"}, []string{"tcp"}, `SERVICE_CHECK_TIMEOUT=\"-1s\"`},
	}
	for _, tc := range cases {
		_, err := rt.Run(t.Context(), runtime.Spec{Name: tc.name, Image: "web", Env: append([]string{"SERVICE_NAME=" + tc.name}, tc.env...),
			Publish: []runtime.Port{{Port: 80, Proto: "tcp", HostIP: ip, HostPort: uint16(port)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, c, rt, daemonConfig{host: "h1"})
	eventually(t, 30*time.Second, "5 services", func() bool { return len(services(t, cl, "berth:h1:")) == 5 })
	checks, err := cl.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var kinds []string
			for id, ck := range checks {
				if ck.ServiceName != tc.name {
					continue
				}
				if k := id[strings.LastIndexByte(id, ':')+1:]; k != "berth" {
					kinds = append(kinds, k)
				}
			}
			slices.Sort(kinds)
			if !slices.Equal(kinds, tc.checks) {
				t.Errorf("label checks %v, want %v", kinds, tc.checks)
			}
			if tc.report != "" && !strings.Contains(d.log.String(), tc.report) {
				t.Errorf("%s not reported:\n%s", tc.report, d.log)
			}
		})
	}
	// The good HTTP check reaches the backend at the published address.
	eventually(t, 30*time.Second, "good-http's HTTP check passing", func() bool {
		h, _, err := cl.Health().Service("good-http", "", true, nil)
		return err == nil && len(h) == 1
	})
}
