package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
)

// TestUpHostileMetadata is the hostile corpus through berth run on the
// embedded runtime, with berth up rendering the shipped nginx template in
// front of a real nginx: containers with bad metadata keep their valid
// routes, their bad values are left out of the records and reported there,
// nothing is injected into nginx's configuration, the good container keeps
// routing, a legitimate 111-byte host name routes, and a good container
// started after the bad ones is routed.
func TestUpHostileMetadata(t *testing.T) {
	r := newProxyRig(t)
	r.start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(r.nginx.Conf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.nginx.Start(t)
	img := r.whoamiImage()
	run := func(name string, args ...string) {
		t.Helper()
		r.cli(append(append([]string{"run", "-d", "--name", name, "-e", "PORT=80", "-e", "WHOAMI_NAME=" + name}, args...), img, "/whoami")...)
	}
	run("good", "-e", "VIRTUAL_HOST=good.localhost")
	r.waitAnswers("good.localhost", "200 good")

	run("meta", "-e", "VIRTUAL_HOST=meta.localhost,bad;host,a.localhost good.localhost,x.localhost\n}\nserver {,include /etc/shadow,}",
		"-e", "VIRTUAL_PATH=/x;include /etc/shadow", "-e", "SERVICE_80_NAME=../../hosts/evil",
		"--label", "berth.service=../../hosts/evil")
	run("proto", "-e", "VIRTUAL_HOST=proto.localhost", "-e", "VIRTUAL_PROTO=http;\nreturn 200", "-e", "SERVICE_NAME=a}b")
	run("huge", "-e", "VIRTUAL_HOST="+strings.Repeat("h", 100<<10)+",huge.localhost")
	run("long", "-e", "VIRTUAL_HOST="+recordstest.Long111)

	r.waitAnswers("meta.localhost", "200 meta")
	r.waitAnswers("proto.localhost", "200 proto")
	r.waitAnswers("huge.localhost", "200 huge")
	r.waitAnswers(recordstest.Long111, "200 long")
	r.waitAnswers("good.localhost", "200 good")
	r.waitAnswers("a.localhost", "503")
	r.waitAnswers("x.localhost", "503")

	run("late", "-e", "VIRTUAL_HOST=late.localhost")
	r.waitAnswers("late.localhost", "200 late")

	reported := map[string][]string{}
	for _, in := range r.records() {
		for _, fe := range in.Invalid {
			reported[in.Name] = append(reported[in.Name], fe.Field)
		}
		if records.CheckService(in.Service) != nil || strings.Contains(in.Service, "evil") {
			t.Errorf("service %q registered", in.Service)
		}
	}
	want := map[string][]string{
		"meta":  {"VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_HOST", "VIRTUAL_PATH", "SERVICE_80_NAME", "label berth.service"},
		"proto": {"VIRTUAL_PROTO", "SERVICE_NAME"},
		"huge":  {"VIRTUAL_HOST"},
	}
	for name, fields := range want {
		if !slices.Equal(reported[name], fields) {
			t.Errorf("%s: reported %q, want %q", name, reported[name], fields)
		}
	}
	for _, name := range []string{"good", "long", "late"} {
		if len(reported[name]) != 0 {
			t.Errorf("%s: reported %q", name, reported[name])
		}
	}
	kvs, _, err := r.st.List(context.Background(), "/berth/")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if _, err := records.ParseKey("/berth", kv.Key); err != nil || strings.Contains(kv.Key, "evil") {
			t.Errorf("key %q outside the schema (%v)", records.Truncate(kv.Key), err)
		}
	}
	conf, err := os.ReadFile(r.nginx.Conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, injected := range []string{"include", "return 200", "bad;host", "/x;"} {
		if strings.Contains(string(conf), injected) {
			t.Errorf("nginx.conf holds %q:\n%s", injected, conf)
		}
	}
}
