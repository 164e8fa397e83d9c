package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/dockergen/dockertest"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/runtime"
)

// dockerGenTemplate uses docker-gen's functions and context the way
// nginx-proxy's template does.
const dockerGenTemplate = `# {{ len $ }} container(s) on {{ $.Docker.Name }}
{{ range $host, $containers := groupByMulti $ "Env.VIRTUAL_HOST" "," }}
upstream {{ $host }} {
{{- range $c := $containers }}
{{- $addr := first $c.Addresses }}
    server {{ (first $c.Networks).IP }}:{{ $addr.Port }}; # {{ $c.Name }}{{ if $c.IP }} legacy bridge IP {{ $c.IP }}?{{ end }}
{{- end }}
}
{{ end }}`

// TestDockerGen runs berth docker-gen with docker-gen's own command line
// against the Docker Engine on this machine.
func TestDockerGen(t *testing.T) {
	img := testenv.BuildDockerImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	tag := img.Tag()
	k, v, _ := strings.Cut(img.Label, "=")
	start := func(name, vhost string) runtime.Container {
		c, err := rt.Run(t.Context(), runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network,
			Labels: map[string]string{k: v}, Env: []string{"VIRTUAL_HOST=" + vhost}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	dir := t.TempDir()
	tmpl, dest, notified := filepath.Join(dir, "nginx.tmpl"), filepath.Join(dir, "default.conf"), filepath.Join(dir, "notified")
	os.WriteFile(tmpl, []byte(dockerGenTemplate), 0o644)

	a := start("a", "a.localhost")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"docker-gen", "-watch", "-wait", "50ms:200ms",
			"-notify", "echo notified >> " + notified, "-only-exposed",
			"-container-filter", "label=" + img.Label, "-event-filter", "event=connect",
			tmpl, dest}, strings.NewReader(""), &out, &errb)
	}()
	contains := func(want ...string) string {
		t.Helper()
		return waitFileContains(t, dest, &errb, want...)
	}
	contains("# 1 container(s)", "upstream a.localhost {\n    server "+a.IP+":8080; # "+a.Name)

	b := start("b", "a.localhost,b.localhost")
	got := contains("# 2 container(s)", "server "+b.IP+":8080; # "+b.Name, "upstream b.localhost")
	if strings.Count(got, b.Name) != 2 {
		t.Fatalf("b is not under both of its hosts:\n%s", got)
	}
	if err := rt.Stop(t.Context(), a.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	got = contains("# 1 container(s)")
	if strings.Contains(got, a.Name) {
		t.Fatalf("stopped container still rendered:\n%s", got)
	}
	// notify runs after the swap: wait for the third one.
	for deadline := time.Now().Add(20 * time.Second); ; {
		n, _ := os.ReadFile(notified)
		if c := strings.Count(string(n), "notified"); c >= 3 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("notify ran %d times for 3 changes", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("docker-gen exited %d: %s", code, errb.String())
	}

	// Without dest: one render to standard output, stopped containers too
	// with -include-stopped.
	code, stdout, errs := runArgs(t, "docker-gen", "-include-stopped", "-container-filter", "label="+img.Label, tmpl)
	if code != 0 || !strings.Contains(stdout, "# 2 container(s)") {
		t.Fatalf("stdout mode: exit %d %q %s", code, stdout, errs)
	}
	// Notifying containers needs a dest (a render that changed it).
	if code, _, errs := runArgs(t, "docker-gen", "-notify-sighup", "nginx", tmpl); code != 2 || !strings.Contains(errs, "need a dest") {
		t.Fatalf("-notify-sighup without dest: exit %d %s", code, errs)
	}
	if code, _, errs := runArgs(t, "docker-gen", "-notify-filter", "nokeyvalue", tmpl, dest); code != 2 || !strings.Contains(errs, "want key=value") {
		t.Fatalf("-notify-filter without =: exit %d %s", code, errs)
	}
	if code, _, _ := runArgs(t, "docker-gen", "-container-filter", "bogus=1", tmpl); code == 0 {
		t.Fatal("an unknown container filter was accepted")
	}
}

func runArgs(t *testing.T, args ...string) (int, string, string) {
	return run(t, t.Context(), "", args...)
}

// TestDockerGenNotifyFlags: docker-gen's -notify-sighup, -notify-container
// with -notify-signal, -notify-filter and -notify-output, against probes
// that count the SIGHUPs they receive.
func TestDockerGenNotifyFlags(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	tag := img.Tag()
	k, v, _ := strings.Cut(img.Label, "=")
	start := func(name, role string, env ...string) runtime.Container {
		t.Helper()
		c, err := rt.Run(t.Context(), runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network,
			Labels: map[string]string{k: v, "berth.test.role": role}, Env: env})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hupped, signalled, filtered, bystander := start("hupped", "x"), start("signalled", "x"), start("filtered", "proxy"), start("bystander", "x")
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte(`{{ range $ }}{{ if .Env.VIRTUAL_HOST }}{{ .Name }}
{{ end }}{{ end }}`), 0o644)

	ctx, cancel := context.WithCancel(t.Context())
	var out, errb testenv.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"docker-gen", "-watch", "-wait", "20ms:100ms",
			"-notify", "echo notify-said-hello; echo second line", "-notify-output",
			"-notify-sighup", hupped.Name, "-notify-container", signalled.ID, "-notify-signal", "1",
			"-notify-filter", "label=berth.test.role=proxy", "-notify-filter", "label=" + img.Label,
			"-container-filter", "label=" + img.Label, tmpl, dest}, strings.NewReader(""), &out, &errb)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("docker-gen exited %d: %s", code, errb.String())
		}
	}()
	want := func(n int) {
		t.Helper()
		for _, c := range []runtime.Container{hupped, signalled, filtered} {
			deadline := time.Now().Add(15 * time.Second)
			for dockertest.Hups(t, c.IP) < n && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		time.Sleep(200 * time.Millisecond)
		for _, c := range []runtime.Container{hupped, signalled, filtered} {
			if got := dockertest.Hups(t, c.IP); got != n {
				t.Fatalf("%s received %d SIGHUPs, want %d\n%s", c.Name, got, n, errb.String())
			}
		}
		if got := dockertest.Hups(t, bystander.IP); got != 0 {
			t.Fatalf("%s, named by no flag, received %d SIGHUPs", bystander.Name, got)
		}
	}
	want(1) // the first render creates dest
	web := start("web", "x", "VIRTUAL_HOST=web.localhost")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(dest); strings.Contains(string(b), web.Name) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%s never rendered: %s", web.Name, errb.String())
		}
	}
	want(2)
	if logs := errb.String(); strings.Count(logs, "line=notify-said-hello") != 2 || strings.Count(logs, `line="second line"`) != 2 {
		t.Fatalf("-notify-output: want each line of the two notify runs logged:\n%s", logs)
	}

	// The same through docker-gen's TOML, spelled as its README does;
	// notifycontainerssignal unset is SIGHUP. Its first render creates
	// its own dest: one more SIGHUP for hupped and filtered, none for
	// signalled.
	conf := filepath.Join(dir, "docker-gen.cfg")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[[config]]
template = %q
dest = %q
watch = true
notifycmd = "echo from-config"
notifyoutput = true
[config.NotifyContainers]
%q = 1
[config.NotifyContainersFilter]
label = ["berth.test.role=proxy", %q]
[config.ContainerFilter]
label = [%q]
`, tmpl, filepath.Join(dir, "out2"), hupped.Name, img.Label, img.Label)), 0o644)
	var errc testenv.SyncBuffer
	ctx2, cancel2 := context.WithCancel(t.Context())
	done2 := make(chan int, 1)
	go func() {
		done2 <- execute(ctx2, []string{"docker-gen", "-config", conf}, strings.NewReader(""), &out, &errc)
	}()
	counts := map[string]int{hupped.Name: 3, filtered.Name: 3, signalled.Name: 2}
	for _, c := range []runtime.Container{hupped, signalled, filtered} {
		deadline := time.Now().Add(15 * time.Second)
		for dockertest.Hups(t, c.IP) < counts[c.Name] && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, c := range []runtime.Container{hupped, signalled, filtered} {
		if got := dockertest.Hups(t, c.IP); got != counts[c.Name] {
			t.Errorf("-config: %s received %d SIGHUPs in all, want %d\n%s", c.Name, got, counts[c.Name], errc.String())
		}
	}
	if !strings.Contains(errc.String(), "line=from-config") {
		t.Errorf("-config notifyoutput: output not logged:\n%s", errc.String())
	}
	cancel2()
	if code := <-done2; code != 0 {
		t.Errorf("docker-gen -config exited %d: %s", code, errc.String())
	}
}

// nginxProxyTestdata holds the large nginx-proxy-style template that calls
// every docker-gen function, its files, and its golden outputs.
const nginxProxyTestdata = "../../dockergen/testdata/nginx-proxy"

// TestDockerGenGolden renders dockergen/testdata/nginx-proxy/nginx.tmpl
// with berth docker-gen against real containers on three user-defined
// networks (one internal), names, IDs and addresses normalized, and
// compares with the golden files (-update rewrites them). A container on
// two networks shared with the proxy is in $ once, with both networks, and
// so gets one upstream server per network, as with docker-gen and
// nginx-proxy.
func TestDockerGenGolden(t *testing.T) {
	img := dockertest.BuildImage(t)
	tag := img.Tag()
	rt := dockertest.Engine(t)
	nets := map[string]string{} // full name → role
	network := func(role string, args ...string) string {
		name := fmt.Sprintf("berth-test-%s-%d%s", tag, len(nets)+1, role)
		cmd := append([]string{"network", "create", "--label", img.Label}, args...)
		if out, err := exec.Command("docker", append(cmd, name)...).CombinedOutput(); err != nil {
			t.Fatalf("docker network create: %v %s", err, out)
		}
		t.Cleanup(func() {
			out, _ := exec.Command("docker", "ps", "-aq", "--filter", "network="+name).Output()
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
			}
			if out, err := exec.Command("docker", "network", "rm", name).CombinedOutput(); err != nil {
				t.Logf("docker network rm %s: %v %s", name, err, out)
			}
		})
		nets[name] = role
		return name
	}
	front, back, other := network("front"), network("back", "--internal"), network("other")
	k, v, _ := strings.Cut(img.Label, "=")
	start := func(name string, labels map[string]string, env []string, networks ...string) runtime.Container {
		t.Helper()
		labels[k] = v
		s := runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: networks[0], Labels: labels, Env: env}
		if name == "web1" {
			s.Publish = []runtime.Port{{Port: 9090, Proto: "tcp", HostIP: "127.0.0.1"}}
		}
		c, err := rt.Run(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range networks[1:] {
			if out, err := exec.Command("docker", "network", "connect", n, c.ID).CombinedOutput(); err != nil {
				t.Fatalf("docker network connect: %v %s", err, out)
			}
		}
		return c
	}
	start("proxy", map[string]string{"com.github.nginx-proxy.nginx": "true"}, nil, front, back)
	start("web1", map[string]string{"com.example.group": "frontend", "com.example.weight": "5"},
		[]string{"VIRTUAL_HOST=app.example.test, www.example.test", "VIRTUAL_PORT=8080", "HTTPS_METHOD=redirect",
			"HSTS=max-age=31536000; includeSubDomains"}, front)
	start("web2", map[string]string{"com.example.group": "frontend", "com.example.weight": "10"},
		[]string{"VIRTUAL_HOST=app.example.test", "VIRTUAL_PROTO=http"}, front, back)
	start("api", map[string]string{"com.example.group": "backend",
		"com.example.routes": "paths:\n  - /v1\n  - /v2\nlimits:\n  rps: 10\n",
		"com.example.meta":   `{"owner":"team-a","tags":["x","y"]}`},
		[]string{`VIRTUAL_HOST=~^api\..+\.test$`, "VIRTUAL_PATH=/v1", "CERT_NAME=example.test", "NOEQ"}, back)
	start("hidden", map[string]string{}, []string{"VIRTUAL_HOST=hidden.example.test"}, other)
	stopped := start("stopped", map[string]string{}, []string{"VIRTUAL_HOST=stopped.example.test"}, front)
	if err := rt.Stop(t.Context(), stopped.ID, time.Second); err != nil {
		t.Fatal(err)
	}

	testdata, err := filepath.Abs(nginxProxyTestdata)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TESTDATA", testdata)
	// What differs from run to run: IDs, addresses, the tag in names.
	all, err := rt.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var pairs, shortIDs []string
	for full, role := range nets {
		pairs = append(pairs, full, role)
	}
	for _, c := range all {
		if c.Labels[k] != v {
			continue
		}
		name := strings.TrimSuffix(c.Name, "-"+tag)
		pairs = append(pairs, c.ID, "<id "+name+">")
		shortIDs = append(shortIDs, c.ID[:12], "<short id "+name+">")
		for _, n := range c.Networks {
			if n.IP == "" || n.Gateway == "" {
				continue // a stopped container's
			}
			pairs = append(pairs, n.IP+"/", "<ip "+name+"@"+nets[n.Name]+">/", n.IP+":", "<ip "+name+"@"+nets[n.Name]+">:",
				n.IP+" ", "<ip "+name+"@"+nets[n.Name]+"> ", n.Gateway+" ", "<gateway "+nets[n.Name]+"> ")
		}
	}
	normalize := strings.NewReplacer(append(append(pairs, shortIDs...), testdata, "$TESTDATA", tag, "TAG")...)

	tmpl := filepath.Join(testdata, "nginx.tmpl")
	for _, tc := range []struct{ golden, flag string }{
		{"default.conf.golden", ""},
		{"keep-blank-lines.conf.golden", "-keep-blank-lines"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			args := []string{"docker-gen", "-container-filter", "label=" + img.Label}
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			code, stdout, errs := runArgs(t, append(args, tmpl)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			got := normalize.Replace(stdout)
			path := filepath.Join(nginxProxyTestdata, tc.golden)
			if *updateGolden {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("output differs from %s (run with -update to rewrite it):\n%s", path, got)
			}
			// Docker keeps an env entry without "=": a key with an empty
			// value, as docker-gen shows it.
			if !strings.Contains(got, `Env.NOEQ: api-TAG NOEQ=""`) {
				t.Errorf("api's NOEQ env entry (no =) is not an empty key")
			}
			// web2 is in $ once and serves app.example.test on both of its
			// networks.
			if n := strings.Count(got, "# container web2-TAG:"); n != 1 {
				t.Errorf("web2 is %d times in $, want once", n)
			}
			_, app, _ := strings.Cut(got, "upstream app.example.test {")
			app, _, _ = strings.Cut(app, "}")
			if !strings.Contains(app, "server <ip web2@front>:8080;") || !strings.Contains(app, "server <ip web2@back>:8080;") {
				t.Errorf("upstream app.example.test lacks web2 on front and back:\n%s", app)
			}
		})
	}
}

// TestMain lets a test run this binary as berth itself (BERTH_TEST_EXEC=1:
// the arguments are berth's), e.g. as another user.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_TEST_EXEC") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// TestDockerGenPermissionDenied runs berth docker-gen -watch as nobody
// against a Docker socket only root may use (a relay to the real one, mode
// 0600): it says permission denied, keeps retrying, leaves the last output
// in place, and renders once the socket is opened to it.
func TestDockerGenPermissionDenied(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	k, v, _ := strings.Cut(img.Label, "=")
	c, err := rt.Run(t.Context(), runtime.Spec{Name: "denied-" + img.Tag(),
		Image: img.Ref, Network: network, Labels: map[string]string{k: v}})
	if err != nil {
		t.Fatal(err)
	}

	const nobody = 65534
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // let nobody reach the binary and the files
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "berth")
	if data, err := os.ReadFile(self); err != nil || os.WriteFile(bin, data, 0o755) != nil {
		t.Fatalf("copy %s: %v", self, err)
	}
	tmpl, out := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}"), 0o644)
	os.Mkdir(out, 0o755)
	dest := filepath.Join(out, "default.conf")
	os.WriteFile(dest, []byte("last good output\n"), 0o644)
	for _, p := range []string{out, dest} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "docker.sock")
	relayUnix(t, sock, "/var/run/docker.sock")
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}

	_, errb, exited := startBerth(t, bin, &syscall.Credential{Uid: nobody, Gid: nobody},
		"docker-gen", "-watch", "-endpoint", "unix://"+sock, "-container-filter", "label="+img.Label, tmpl, dest)

	for deadline := time.Now().Add(20 * time.Second); strings.Count(errb.String(), "permission denied") < 2; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("berth docker-gen exited (%v) instead of retrying:\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no repeated permission denied error:\n%s", errb.String())
		}
	}
	if !strings.Contains(errb.String(), "run as root or as a member of the socket's group") {
		t.Errorf("the error does not say what to do:\n%s", errb.String())
	}
	if b, _ := os.ReadFile(dest); string(b) != "last good output\n" {
		t.Fatalf("the destination changed while Docker refused: %q", b)
	}

	first, _, _ := strings.Cut(errb.String(), "\n")
	t.Logf("as nobody: %s", first)
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(dest); string(b) == c.Name+"\n" {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(dest)
			t.Fatalf("not rendered after the socket opened: %q\n%s", b, errb.String())
		}
	}
}

// relayUnix serves a unix socket at path that relays every connection to
// target, until the test ends.
func relayUnix(t *testing.T, path, target string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// startBerth starts bin (this test binary, run as berth through TestMain)
// with args, as cred when not nil, and stops it with SIGTERM when the test
// ends. exited receives its end.
func startBerth(t *testing.T, bin string, cred *syscall.Credential, args ...string) (*exec.Cmd, *testenv.SyncBuffer, <-chan error) {
	t.Helper()
	errb := &testenv.SyncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "BERTH_TEST_EXEC=1")
	cmd.Stderr = errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			exited <- err
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	return cmd, errb, exited
}

// TestDockerGenTemplateErrorsAndSIGHUP: a template that panics while
// rendering is an error naming file:line, the process stays up and the
// destination keeps its last output; SIGHUP reads the template again (a
// fixed one renders; one that no longer parses is refused and the previous
// version keeps rendering).
func TestDockerGenTemplateErrorsAndSIGHUP(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	tag := img.Tag()
	k, v, _ := strings.Cut(img.Label, "=")
	start := func(name string) runtime.Container {
		t.Helper()
		c, err := rt.Run(t.Context(), runtime.Spec{Name: name + "-" + tag, Image: img.Ref, Network: network, Labels: map[string]string{k: v}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := start("a")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmpl, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out")
	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}\n{{ div 1 0 }}\n"), 0o644)
	os.WriteFile(dest, []byte("last good output\n"), 0o644)
	cmd, errb, exited := startBerth(t, self, nil, "docker-gen", "-watch", "-wait", "20ms:100ms",
		"-container-filter", "label="+img.Label, tmpl, dest)
	waitLog := func(n int, want ...string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ok := true
			for _, w := range want {
				ok = ok && strings.Count(errb.String(), w) >= n
			}
			if ok {
				return
			}
			select {
			case err := <-exited:
				t.Fatalf("berth docker-gen exited (%v):\n%s", err, errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, errb.String())
			}
		}
	}
	waitFile := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if b, _ := os.ReadFile(dest); string(b) == want {
				return
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(dest)
				t.Fatalf("dest is %q, want %q\n%s", b, want, errb.String())
			}
		}
	}
	waitLog(1, tmpl+":3:", "integer divide by zero")
	if b, _ := os.ReadFile(dest); string(b) != "last good output\n" {
		t.Fatalf("a failed render changed the destination: %q", b)
	}

	os.WriteFile(tmpl, []byte("{{ range $ }}{{ .Name }}\n{{ end }}"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFile(a.Name + "\n")

	os.WriteFile(tmpl, []byte("{{ range $ }}\n{{ .Name }"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(1, "keeping its previous version", tmpl+":2")
	b := start("b")
	waitFile(a.Name + "\n" + b.Name + "\n")
}
