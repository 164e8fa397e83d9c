package registrar

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/runtime"
)

func TestRegistrationsAt(t *testing.T) {
	base := runtime.Container{ID: "c0ffee", Name: "web-1", Image: "example/web:1", State: runtime.StateRunning, IP: "10.0.0.2", Health: runtime.HealthNone}
	with := func(mod func(*runtime.Container)) runtime.Container {
		c := base
		c.Ports = []runtime.Port{{Port: 8080, Proto: "tcp", HostIP: "0.0.0.0", HostPort: 18080}}
		mod(&c)
		return c
	}
	reg := func(mod func(*Registration)) Registration {
		r := Registration{Container: "c0ffee", ContainerName: "web-1", Image: "example/web:1", Service: "web", Port: 8080, Proto: "tcp",
			HostPort: 18080, CheckAddr: "10.0.0.2:8080", Health: "none"}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	for _, tc := range []struct {
		name      string
		c         runtime.Container
		advertise string
		want      []Registration
		warn      string // in the warnings
	}{
		{"published", with(func(c *runtime.Container) {}), "", []Registration{reg(nil)}, ""},
		{"advertised", with(func(c *runtime.Container) {}), "192.0.2.1", []Registration{reg(func(r *Registration) { r.Address, r.CheckAddr = "192.0.2.1", "192.0.2.1:18080" })}, ""},
		{"host ip", with(func(c *runtime.Container) { c.Ports[0].HostIP = "127.0.0.1" }), "", []Registration{reg(func(r *Registration) { r.Address, r.CheckAddr = "127.0.0.1", "127.0.0.1:18080" })}, ""},
		{"unpublished", with(func(c *runtime.Container) { c.Ports[0].HostPort = 0 }), "", nil, ""},
		{"stopped", with(func(c *runtime.Container) { c.State = runtime.StateExited }), "", nil, ""},
		{"ignored", with(func(c *runtime.Container) { c.Env = []string{"SERVICE_IGNORE=1"} }), "", nil, ""},
		{"unhealthy stays, critical", with(func(c *runtime.Container) { c.Health = runtime.HealthUnhealthy }), "", []Registration{reg(func(r *Registration) { r.Health = "unhealthy" })}, ""},
		{"names tags attrs", with(func(c *runtime.Container) {
			c.Env = []string{"SERVICE_NAME=api", "SERVICE_TAGS=a,b", "SERVICE_8080_NAME=api-http", "SERVICE_OWNER=ops", "SERVICE_8080_OWNER=web-team", "SERVICE_9090_OWNER=x", "SERVICE_WEIGHT=2"}
		}), "", []Registration{reg(func(r *Registration) {
			r.Service, r.Tags, r.Attrs = "api-http", []string{"a", "b"}, map[string]string{"owner": "web-team"}
		})}, ""},
		{"bad name falls back", with(func(c *runtime.Container) { c.Env = []string{"SERVICE_NAME=bad/name"} }), "", []Registration{reg(nil)}, ""},
		{"checks", with(func(c *runtime.Container) {
			c.Env = []string{"SERVICE_CHECK_HTTP=/health?x=1", "SERVICE_8080_CHECK_INTERVAL=5s", "SERVICE_CHECK_TIMEOUT=2s", "SERVICE_CHECK_TCP=true"}
		}), "", []Registration{reg(func(r *Registration) {
			r.Checks = []Check{{"http", "http://10.0.0.2:8080/health?x=1", 5 * time.Second, 2 * time.Second}, {"tcp", "10.0.0.2:8080", 5 * time.Second, 2 * time.Second}}
		})}, ""},
		{"bad check url", with(func(c *runtime.Container) { c.Env = []string{"SERVICE_CHECK_HTTPS=/a\x00b"} }), "", []Registration{reg(nil)}, "SERVICE_CHECK_HTTPS"},
		{"bad interval keeps the check", with(func(c *runtime.Container) { c.Env = []string{"SERVICE_CHECK_TCP=true", "SERVICE_CHECK_INTERVAL=2h"} }), "",
			[]Registration{reg(func(r *Registration) { r.Checks = []Check{{"tcp", "10.0.0.2:8080", DefaultCheckInterval, 0}} })}, "SERVICE_CHECK_INTERVAL"},
		{"bad port tag", with(func(c *runtime.Container) { c.Env = []string{"SERVICE_8080_TAGS=ok,bad;tag"} }), "", []Registration{reg(func(r *Registration) { r.Tags = []string{"ok"} })}, "SERVICE_8080_TAGS"},
		{"published twice", with(func(c *runtime.Container) {
			c.Ports = append(c.Ports, runtime.Port{Port: 8080, Proto: "tcp", HostIP: "::", HostPort: 28080})
		}), "", []Registration{reg(nil)}, ""},
		{"udp has no checks", with(func(c *runtime.Container) {
			c.Ports[0].Proto = "udp"
			c.Env = []string{"SERVICE_CHECK_TCP=true"}
		}), "", []Registration{reg(func(r *Registration) { r.Proto = "udp" })}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, warnings, _ := registrationsAt(tc.advertise, tc.c)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("registrations\n got %+v\nwant %+v", got, tc.want)
			}
			w := strings.Join(warnings, "\n")
			if (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings %q, want one about %q", w, tc.warn)
			}
		})
	}
}
