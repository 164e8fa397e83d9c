package dockercompat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
)

// cliSession is what one run of the CLI scenario produced on one daemon.
type cliSession struct {
	steps    map[string]cliResult
	order    []string
	id       string // of web-<tag>
	httpBody string // what web-<tag> answered on its published port
}

// runCLIScenario drives the docker CLI against host ("" = the machine's
// Docker Engine) through the flows issue #8 names: version, info, run -d
// with -e/--label/--name/-p, ps, ps -a --format json, inspect (found and
// not), logs and logs -f, stop, rm and events --since.
func runCLIScenario(t *testing.T, host string, img testenv.DockerImage, tag string) cliSession {
	t.Helper()
	s := cliSession{steps: map[string]cliResult{}}
	step := func(name string, args ...string) cliResult {
		t.Helper()
		r := docker(t, host, args...)
		s.steps[name] = r
		s.order = append(s.order, name)
		return r
	}
	web, lf := "web-"+tag, "lf-"+tag
	t0 := time.Now().Add(-time.Second)
	step("version", "version", "--format", "{{.Server.APIVersion}}|{{.Server.Os}}")
	step("info", "info", "--format", "{{.OSType}}|{{.Swarm.LocalNodeState}}|{{.Swarm.ControlAvailable}}")
	run := step("run", "run", "-d", "--name", web, "--label", img.Label, "-e", "VIRTUAL_HOST=web.test",
		"-p", "127.0.0.1::8080", img.Ref)
	s.id = strings.TrimSpace(run.stdout)
	if run.code != 0 {
		t.Fatalf("docker run on %q: exit %d\n%s%s", host, run.code, run.stdout, run.stderr)
	}
	p := step("port", "port", web, "8080/tcp")
	if hp := strings.TrimSpace(strings.Split(p.stdout, "\n")[0]); hp != "" {
		s.httpBody = httpGetRetry(t, "http://"+hp+"/")
	}
	step("ps", "ps", "--filter", "label="+img.Label)
	step("ps-json", "ps", "-a", "--filter", "label="+img.Label, "--format", "json")
	step("inspect", "inspect", web)
	step("inspect-missing", "inspect", "nosuch-"+tag)
	step("logs", "logs", web)

	// logs -f follows a running container and ends when it stops.
	step("run-lf", "run", "-d", "--name", lf, "--label", img.Label, img.Ref)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	follow := exec.CommandContext(ctx, "docker", "logs", "-f", lf)
	follow.Env = dockerEnv(t, host)
	var fout, ferr testenv.SyncBuffer
	follow.Stdout, follow.Stderr = &fout, &ferr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "docker logs -f to print the listening line", func() bool {
		return strings.Contains(ferr.String(), "listening on")
	})
	step("stop-lf", "stop", "-t", "1", lf)
	fdone := make(chan error, 1)
	go func() { fdone <- follow.Wait() }()
	select {
	case err := <-fdone:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		s.steps["logs-f"] = cliResult{args: []string{"logs", "-f", lf}, code: code, stdout: fout.String(), stderr: ferr.String()}
		s.order = append(s.order, "logs-f")
	case <-time.After(20 * time.Second):
		t.Fatalf("docker logs -f %s on %q did not end after the container stopped", lf, host)
	}

	step("rm-running", "rm", web)
	step("stop", "stop", "-t", "1", web)
	step("rm", "rm", web, lf)
	until := time.Now()
	step("events", "events", "--since", fmt.Sprintf("%d", t0.Unix()), "--until", fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond()),
		"--filter", "label="+img.Label, "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGetRetry(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jsonKeys returns the sorted keys of the JSON object at path (dot
// separated; "" = the top) in v.
func jsonKeys(t *testing.T, v any, path string) []string {
	t.Helper()
	for _, p := range strings.Split(path, ".") {
		if p == "" {
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object", path)
		}
		v = m[p]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T is not an object", path, v)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// diffKeys lists the keys only in a and only in b.
func diffKeys(a, b []string) (onlyA, onlyB []string) {
	for _, k := range a {
		if !slices.Contains(b, k) {
			onlyA = append(onlyA, k)
		}
	}
	for _, k := range b {
		if !slices.Contains(a, k) {
			onlyB = append(onlyB, k)
		}
	}
	return onlyA, onlyB
}

func lineSet(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" && !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestDockerCLI runs the same docker CLI scenario against berth and
// against the machine's Docker Engine (the same FROM scratch image in
// both) and compares exit codes and the shape of the output.
func TestDockerCLI(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	tag := img.Tag()
	d := startDaemon(t)
	loadDockerImage(t, d, img.Ref)

	ours := runCLIScenario(t, d.host, img, tag)
	theirs := runCLIScenario(t, "", img, tag)

	for _, name := range ours.order {
		o, th := ours.steps[name], theirs.steps[name]
		if o.code != th.code {
			t.Errorf("docker %s: exit %d on berth, %d on Docker\nberth: %s%s\ndocker: %s%s",
				strings.Join(o.args, " "), o.code, th.code, o.stdout, o.stderr, th.stdout, th.stderr)
		}
	}
	web := "web-" + tag
	hexID := regexp.MustCompile(`^[0-9a-f]{64}\n$`)
	checks := []struct {
		step  string
		check func(t *testing.T, o, th cliResult)
	}{
		{"version", func(t *testing.T, o, th cliResult) {
			if o.stdout != "1.51|linux\n" {
				t.Errorf("berth: %q, want 1.51|linux", o.stdout)
			}
		}},
		{"info", func(t *testing.T, o, th cliResult) {
			if o.stdout != th.stdout || o.stdout != "linux|inactive|false\n" {
				t.Errorf("berth %q, Docker %q", o.stdout, th.stdout)
			}
		}},
		{"run", func(t *testing.T, o, th cliResult) {
			if !hexID.MatchString(o.stdout) || !hexID.MatchString(th.stdout) {
				t.Errorf("want a 64-hex id: berth %q, Docker %q", o.stdout, th.stdout)
			}
		}},
		{"port", func(t *testing.T, o, th cliResult) {
			re := regexp.MustCompile(`^127\.0\.0\.1:\d+\n$`)
			if !re.MatchString(o.stdout) || !re.MatchString(th.stdout) {
				t.Errorf("berth %q, Docker %q", o.stdout, th.stdout)
			}
		}},
		{"ps", func(t *testing.T, o, th cliResult) {
			ol, tl := strings.Split(strings.TrimSpace(o.stdout), "\n"), strings.Split(strings.TrimSpace(th.stdout), "\n")
			if len(ol) != 2 || len(tl) != 2 {
				t.Fatalf("want a header and one row:\nberth:\n%s\nDocker:\n%s", o.stdout, th.stdout)
			}
			if strings.Fields(ol[0])[0] != "CONTAINER" || strings.Join(strings.Fields(ol[0]), " ") != strings.Join(strings.Fields(tl[0]), " ") {
				t.Errorf("headers differ:\nberth:  %s\nDocker: %s", ol[0], tl[0])
			}
			row := regexp.MustCompile(`^[0-9a-f]{12}\s+` + regexp.QuoteMeta(img.Ref) + `\s+"/whoami"\s+.+ ago\s+Up .+\s+127\.0\.0\.1:\d+->8080/tcp\s+` + web + `$`)
			for who, r := range map[string]string{"berth": ol[1], "Docker": tl[1]} {
				if !row.MatchString(r) {
					t.Errorf("%s row %q does not match %s", who, r, row)
				}
			}
		}},
		{"ps-json", func(t *testing.T, o, th cliResult) {
			var om, tm map[string]any
			if err := json.Unmarshal([]byte(o.stdout), &om); err != nil {
				t.Fatalf("berth: %v: %q", err, o.stdout)
			}
			if err := json.Unmarshal([]byte(th.stdout), &tm); err != nil {
				t.Fatalf("Docker: %v: %q", err, th.stdout)
			}
			if a, b := diffKeys(jsonKeys(t, om, ""), jsonKeys(t, tm, "")); len(a)+len(b) > 0 {
				t.Errorf("keys only on berth %v, only on Docker %v", a, b)
			}
			for _, k := range []string{"Names", "State", "Image", "Command", "Ports", "Networks"} {
				ov, tv := fmt.Sprint(om[k]), fmt.Sprint(tm[k])
				if k == "Ports" {
					re := regexp.MustCompile(`:\d+->`)
					ov, tv = re.ReplaceAllString(ov, ":N->"), re.ReplaceAllString(tv, ":N->")
				}
				if ov != tv {
					t.Errorf("%s: berth %q, Docker %q", k, ov, tv)
				}
			}
		}},
		{"inspect", func(t *testing.T, o, th cliResult) {
			var oa, ta []map[string]any
			if err := json.Unmarshal([]byte(o.stdout), &oa); err != nil || len(oa) != 1 {
				t.Fatalf("berth: %v: %q", err, o.stdout)
			}
			if err := json.Unmarshal([]byte(th.stdout), &ta); err != nil || len(ta) != 1 {
				t.Fatalf("Docker: %v: %q", err, th.stdout)
			}
			// What differs on purpose: Docker 20.10 (API 1.41) has no
			// ImageManifestDescriptor/Storage; berth has no AppArmor.
			for _, path := range []string{"", "State", "NetworkSettings", "Config"} {
				a, b := diffKeys(jsonKeys(t, oa[0], path), jsonKeys(t, ta[0], path))
				b = slices.DeleteFunc(b, func(k string) bool { return k == "OnBuild" })
				if len(a)+len(b) > 0 {
					t.Errorf("inspect .%s: keys only on berth %v, only on Docker %v", path, a, b)
				}
			}
			ns := oa[0]["NetworkSettings"].(map[string]any)
			if ip, _ := ns["IPAddress"].(string); !strings.HasPrefix(ip, "10.") {
				t.Errorf("berth: legacy NetworkSettings.IPAddress %q, want the container's bridge address", ip)
			}
			if b, _ := json.Marshal(ns["Ports"]); !regexp.MustCompile(`^\{"8080/tcp":\[\{"HostIp":"127.0.0.1","HostPort":"\d+"\}\]\}$`).Match(b) {
				t.Errorf("berth: NetworkSettings.Ports %s", b)
			}
			cfg := oa[0]["Config"].(map[string]any)
			if env := fmt.Sprint(cfg["Env"]); !strings.Contains(env, "VIRTUAL_HOST=web.test") {
				t.Errorf("berth: Config.Env %s", env)
			}
			k, v, _ := strings.Cut(img.Label, "=")
			if l := cfg["Labels"].(map[string]any); l[k] != v {
				t.Errorf("berth: Config.Labels %v", l)
			}
			if oa[0]["Name"] != "/"+web {
				t.Errorf("berth: Name %v", oa[0]["Name"])
			}
		}},
		{"inspect-missing", func(t *testing.T, o, th cliResult) {
			if o.stdout != th.stdout || o.stderr != th.stderr {
				t.Errorf("berth %q %q, Docker %q %q", o.stdout, o.stderr, th.stdout, th.stderr)
			}
		}},
		{"logs", func(t *testing.T, o, th cliResult) {
			for who, r := range map[string]cliResult{"berth": o, "Docker": th} {
				if !strings.Contains(r.stderr, "listening on :8080") || r.stdout != "" {
					t.Errorf("%s: stdout %q stderr %q", who, r.stdout, r.stderr)
				}
			}
		}},
		{"logs-f", func(t *testing.T, o, th cliResult) {
			if !strings.Contains(o.stderr, "listening on :8080") {
				t.Errorf("berth: %q", o.stderr)
			}
		}},
		{"rm-running", func(t *testing.T, o, th cliResult) {
			for who, r := range map[string]cliResult{"berth": o, "Docker": th} {
				if r.code != 1 || !strings.HasPrefix(r.stderr, "Error response from daemon: ") {
					t.Errorf("%s: exit %d, %q", who, r.code, r.stderr)
				}
			}
		}},
		{"stop", func(t *testing.T, o, th cliResult) {
			if o.stdout != th.stdout || o.stdout != web+"\n" {
				t.Errorf("berth %q, Docker %q", o.stdout, th.stdout)
			}
		}},
		{"rm", func(t *testing.T, o, th cliResult) {
			if o.stdout != th.stdout {
				t.Errorf("berth %q, Docker %q", o.stdout, th.stdout)
			}
		}},
		{"events", func(t *testing.T, o, th cliResult) {
			// Docker's history also has the image build's own events.
			ours := func(l string) bool { return !strings.HasSuffix(l, " "+web) && !strings.HasSuffix(l, " lf-"+tag) }
			ol, tl := slices.DeleteFunc(lineSet(o.stdout), ours), slices.DeleteFunc(lineSet(th.stdout), ours)
			if !slices.Equal(ol, tl) || len(ol) != 12 {
				t.Errorf("events differ:\nberth:\n%s\nDocker:\n%s", strings.Join(ol, "\n"), strings.Join(tl, "\n"))
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.step, func(t *testing.T) { c.check(t, ours.steps[c.step], theirs.steps[c.step]) })
	}
	if want := ours.id[:12] + "\n"; ours.httpBody != want {
		t.Errorf("berth: the published port answered %q, want the container's hostname %q", ours.httpBody, want)
	}
	if want := theirs.id[:12] + "\n"; theirs.httpBody != want {
		t.Errorf("Docker: the published port answered %q, want %q", theirs.httpBody, want)
	}
}
