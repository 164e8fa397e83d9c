package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store/etcd"
)

// TestDeployCLI drives berth deploy, history and rollback against berth up
// (a process, the shipped nginx template, a real nginx, whoami containers
// without a health check: TCP accept decides): a deploy, a replacement, a
// deploy whose containers exit, a rollback, and the bad input each command
// refuses before touching anything.
func TestDeployCLI(t *testing.T) {
	r := newProxyRig(t)
	r.start()
	deadline := time.Now().Add(30 * time.Second)
	for _, err := os.Stat(r.nginx.Conf); err != nil; _, err = os.Stat(r.nginx.Conf) {
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.nginx.Start(t)
	img := r.whoamiImage()
	deployArgs := func(version string, extra ...string) []string {
		return append([]string{"deploy", "web", "--image", img, "--replicas", "2", "-e", "VIRTUAL_HOST=web.localhost",
			"-e", "PORT=80", "-e", "WHOAMI_NAME=" + version, "--timeout", "20s"}, append(extra, "--", "/whoami")...)
	}
	out := r.cli(deployArgs("v1")...)
	if !strings.Contains(out, "web revision 1 succeeded") {
		t.Errorf("deploy v1 printed:\n%s", out)
	}
	r.waitAnswers("web.localhost", "200 v1")
	out = r.cli(deployArgs("v2")...)
	for _, want := range []string{"start:", "healthy:", "routed:", "drain:", "stop:", "web revision 2 succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy v2 printed no %q:\n%s", want, out)
		}
	}
	r.waitAnswers("web.localhost", "200 v2")
	if ps := r.cli("ps", "--filter", "label=berth.service=web", "--format", "{{.Names}}"); ps != "web-2-1\nweb-2-2" && ps != "web-2-2\nweb-2-1" {
		t.Errorf("running after deploy v2: %q", ps)
	}

	// Containers that exit: the deploy fails (exit 1), v2 serves on.
	code, stdout, stderr := berthCLI(context.Background(), append([]string{"--host", r.sock}, deployArgs("v3", "-e", "PORT=notaport")...)...)
	if code != 1 || !strings.Contains(stderr, "revision 3 failed") || !strings.Contains(stderr, "exited") {
		t.Errorf("deploy of exiting containers: exit %d\n%s%s", code, stdout, stderr)
	}
	r.waitAnswers("web.localhost", "200 v2")

	out = r.cli("rollback", "web")
	if !strings.Contains(out, "web revision 4 succeeded") {
		t.Errorf("rollback printed:\n%s", out)
	}
	r.waitAnswers("web.localhost", "200 v1")
	hist := r.cli("history", "web")
	for _, want := range []string{"REVISION", "succeeded", "failed", "(rollback to 1)", "exited with status"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history has no %q:\n%s", want, hist)
		}
	}
	if n := len(strings.Split(hist, "\n")); n != 5 {
		t.Errorf("history has %d lines, want a header and 4 revisions:\n%s", n, hist)
	}

	// The client goes away mid-rollout (Ctrl-C): the daemon removes the new
	// containers and records why; v1 serves on.
	ctx, cancel := context.WithCancel(t.Context())
	v5 := deploy.Spec{Image: img, Replicas: 2, Container: runtime.Spec{Cmd: []string{"/whoami"},
		Env:    []string{"VIRTUAL_HOST=web.localhost", "PORT=80", "WHOAMI_NAME=v5"},
		Health: &runtime.HealthCheck{Cmd: []string{"/whoami", "-check", "http://127.0.0.1/"}, Interval: time.Minute}}}
	_, err := api.NewClient(r.sock).Deploy(ctx, deploy.Request{Service: "web", Spec: v5}, func(p deploy.Progress) {
		if p.Step == deploy.StepStart {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("an interrupted deploy returned no error")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		hist, err := api.NewClient(r.sock).History(t.Context(), "web")
		if err != nil {
			t.Fatal(err)
		}
		if last := hist[len(hist)-1]; last.Number == 5 && last.Outcome == deploy.OutcomeFailed {
			if !strings.Contains(last.Reason, "canceled") {
				t.Errorf("interrupted revision's reason: %q", last.Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interrupted revision is not recorded failed: %+v", hist[len(hist)-1])
		}
	}
	if ps := r.cli("ps", "-a", "--filter", "label=berth.deploy.revision=5", "--format", "{{.Names}}"); ps != "" {
		t.Errorf("an interrupted deploy left containers: %q", ps)
	}
	r.waitAnswers("web.localhost", "200 v1")
	hist = r.cli("history", "web")

	// Bad input: refused (exit 2), nothing touched.
	spec := filepath.Join(t.TempDir(), "service.toml")
	if err := os.WriteFile(spec, []byte("image = \"whoami:e2e\"\nreplica = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "web", "--image", "nosuch:1"}, "no such image"},
		{[]string{"deploy", "web", "-f", spec}, spec + ":2:1: unknown key \"replica\""},
		{[]string{"deploy", "web"}, "give --image"},
		{[]string{"rollback", "web", "--to", "99"}, "no revision 99"},
		{[]string{"rollback", "web", "--to", "3"}, "only a revision that succeeded"},
	} {
		code, _, stderr := berthCLI(context.Background(), append([]string{tc.args[0], "--host", r.sock}, tc.args[1:]...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("berth %s: exit %d, %q; want 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	if hist2 := r.cli("history", "web"); hist2 != hist {
		t.Errorf("bad input changed the history:\n%s", hist2)
	}
	r.waitAnswers("web.localhost", "200 v1")
}

// TestDeployDockerRuntime: berth up --runtime docker serves the deploy
// API on its socket, and a deploy, a replacement and a rollback (by the
// image ID Docker reported) run against the real Docker Engine.
func TestDeployDockerRuntime(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	netName := testenv.DockerNetwork(t, img)
	storeDir := t.TempDir()
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	host := "dkd-" + img.Tag()
	dir := t.TempDir()
	sock := filepath.Join(dir, "berth.sock")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _, stderr := berthCLI(ctx, "up", "--runtime", "docker", "--store", "embedded://"+storeDir, "--hostname", host,
			"--state-dir", dir, "--socket", sock, "--drain", "500ms", "--log-level", "warn"); code != 0 {
			t.Errorf("berth up: exit %d: %s", code, stderr)
		}
	}()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); api.NewClient(sock).Ping(t.Context()) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("berth up --runtime docker never answered on its socket")
		}
	}
	cli := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := berthCLI(t.Context(), append([]string{args[0], "--host", sock}, args[1:]...)...)
		if code != 0 {
			t.Fatalf("berth %s: exit %d: %s%s", strings.Join(args, " "), code, stdout, stderr)
		}
		return stdout
	}
	// serving is what the service's registered instances answer.
	serving := func() map[string]bool {
		kvs, _, err := st.List(t.Context(), "/berth/services/dkd/")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, kv := range kvs {
			var in records.Instance
			if err := json.Unmarshal(kv.Value, &in); err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get("http://" + in.Address() + "/")
			if err != nil {
				t.Fatalf("%s (%s): %v", in.Name, in.Address(), err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[string(in.State)+" "+strings.TrimSpace(string(b))] = true
		}
		return got
	}
	deploy := func(version string) string {
		return cli("deploy", "dkd", "--image", img.Ref, "--replicas", "2", "--network", netName, "-l", img.Label,
			"-e", "VIRTUAL_HOST=dkd.localhost", "-e", "VIRTUAL_PORT=8080", "-e", "WHOAMI_NAME="+version)
	}
	deploy("v1")
	if got := serving(); len(got) != 1 || !got["running v1"] {
		t.Errorf("after deploy v1: %v", got)
	}
	deploy("v2")
	if got := serving(); len(got) != 1 || !got["running v2"] {
		t.Errorf("after deploy v2: %v", got)
	}
	out, err := exec.Command("docker", "ps", "--filter", "label=berth.service=dkd", "--format", "{{.Names}}").CombinedOutput()
	if names := strings.Fields(string(out)); err != nil || len(names) != 2 || !strings.HasPrefix(names[0], "dkd-2-") {
		t.Errorf("docker ps after deploy v2: %v %q", err, out)
	}
	if out := cli("rollback", "dkd"); !strings.Contains(out, "dkd revision 3 succeeded") {
		t.Errorf("rollback: %s", out)
	}
	if got := serving(); len(got) != 1 || !got["running v1"] {
		t.Errorf("after the rollback: %v", got)
	}
}
