package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/explain"
)

// TestExplainDaemon asks a real berth up (embedded runtime and store, the
// shipped nginx template, a real nginx) about real containers: a routed
// one, one filtered out, one whose VIRTUAL_HOST is invalid, one unhealthy,
// one stopped; a host name; a service; and -o json.
func TestExplainDaemon(t *testing.T) {
	r := newProxyRig(t)
	r.start()
	deadline := time.Now().Add(30 * time.Second)
	for r.metric(`berth_renders_total{outcome="changed",template="nginx"}`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.nginx.Start(t)
	img := r.whoamiImage()
	host := "explain.localhost"
	r.cli("run", "-d", "--name", "routed", "-e", "VIRTUAL_HOST="+host, "-e", "PORT=80", "-e", "WHOAMI_NAME=routed", img, "/whoami")
	r.cli("run", "-d", "--name", "ignored", "-l", "berth.ignore=true", "-e", "VIRTUAL_HOST="+host, "-e", "PORT=80", img, "/whoami")
	r.cli("run", "-d", "--name", "badhost", "-e", "VIRTUAL_HOST=bad;host", "-e", "PORT=80", img, "/whoami")
	// The image has no shell: the check fails every time.
	r.cli("run", "-d", "--name", "unhealthy", "--health-cmd", "exit 1", "--health-interval", "100ms", "--health-retries", "1",
		"-e", "VIRTUAL_HOST="+host, "-e", "PORT=80", img, "/whoami")
	r.cli("run", "-d", "--name", "stopped", "-e", "VIRTUAL_HOST="+host, "-e", "PORT=80", img, "/whoami")
	r.cli("stop", "stopped")
	r.waitAnswers(host, "200 routed")

	explainJSON := func(args ...string) explain.Report {
		t.Helper()
		out := r.cli(append([]string{"explain", "-o", "json"}, args...)...)
		var rep explain.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return rep
	}
	// Wait out what settles on its own: the unhealthy verdict, the stopped
	// container's drain (1s).
	waitReason := func(name, code string) explain.Report {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			rep := explainJSON(name)
			c := rep.Container
			if c != nil && len(c.Reasons) > 0 && c.Reasons[0].Code == code {
				return rep
			}
			if time.Now().After(deadline) {
				b, _ := json.MarshalIndent(rep, "", "  ")
				t.Fatalf("explain %s: want %s first\n%s", name, code, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	routed := explainJSON("routed").Container
	if !routed.Routed || len(routed.Reasons) != 0 || len(routed.Uses) != 1 || !routed.Uses[0].Routes || len(routed.Records) != 2 {
		t.Errorf("routed: %+v", routed)
	}
	if routed.Records[0].Revision == 0 {
		t.Errorf("routed: no revision on its record: %+v", routed.Records[0])
	}
	waitReason("ignored", explain.ReasonIgnored)
	bad := waitReason("badhost", explain.ReasonInvalidVirtualHost).Container
	if len(bad.Invalid) == 0 || bad.Invalid[0].Field != "VIRTUAL_HOST" || bad.Invalid[0].Value != "bad;host" {
		t.Errorf("badhost: invalid %+v", bad.Invalid)
	}
	waitReason("unhealthy", explain.ReasonUnhealthy)
	waitReason("stopped", explain.ReasonStopped)

	text := r.cli("explain", "routed")
	for _, want := range []string{"container routed (", "runtime: running", "routed: yes", "routes it: " + r.nginx.Conf} {
		if !strings.Contains(text, want) {
			t.Errorf("explain routed lacks %q:\n%s", want, text)
		}
	}
	hostText := r.cli("explain", host)
	for _, want := range []string{"host " + host, "upstream " + host + ": path /, http, 1 server(s)", "container routed", "template nginx serves it at " + r.nginx.Conf} {
		if !strings.Contains(hostText, want) {
			t.Errorf("explain %s lacks %q:\n%s", host, want, hostText)
		}
	}
	svc := explainJSON("--as", "service", "whoami")
	if svc.Service == nil || len(svc.Service.Instances) != 2 { // routed and badhost
		t.Errorf("service whoami: %+v", svc.Service)
	}
	code, _, errs := berthCLI(context.Background(), "explain", "--host", r.sock, "no-such-thing")
	if code != exitFailure || !strings.Contains(errs, "no-such-thing") {
		t.Errorf("explain no-such-thing: exit %d: %s", code, errs)
	}
}
