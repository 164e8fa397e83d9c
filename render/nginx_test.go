package render

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxConf is a whole nginx.conf whose every path lies in the test's
// directory; the server answers with the config's version.
const nginxConf = `daemon off;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/tmp/body;
    proxy_temp_path {{.Dir}}/tmp/proxy;
    fastcgi_temp_path {{.Dir}}/tmp/fastcgi;
    uwsgi_temp_path {{.Dir}}/tmp/uwsgi;
    scgi_temp_path {{.Dir}}/tmp/scgi;
    upstream app {
{{- range .Servers}}
        server {{.}};
{{- end}}
    }
    server {
        listen {{.Listen}};
        {{.Extra}}
        location / { return 200 "{{.Version}}\n"; }
    }
}
`

type nginxData struct {
	Dir, Listen, Version, Extra string
	Servers                     []string
}

// TestNginx runs the pipeline against a real nginx: nginx -t checks the
// staged file, nginx -s reload applies it; a config nginx rejects never
// reaches the destination and the running nginx keeps serving the old one.
func TestNginx(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatalf("nginx is required: %v", err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "nginx.conf")
	listen := freeAddr(t)
	flags := fmt.Sprintf("-p %s/ -e %s/error.log", dir, dir)
	spec := Spec{
		Name:    "nginx",
		Dest:    dest,
		Check:   nginx + " -t -q " + flags + " -c {{.src}}",
		Reload:  nginx + " -s reload " + flags + " -c " + dest,
		Timeout: 20 * time.Second,
	}
	job := func(version, extra string) Job {
		data := nginxData{Dir: dir, Listen: listen, Version: version, Extra: extra, Servers: []string{"127.0.0.1:9001", "127.0.0.1:9002"}}
		return Job{Spec: spec, Source: newTextSource(t, nginxConf, data, len(data.Servers))}
	}
	r := testRenderer(t)

	// First render: checked, written; nothing to reload yet.
	first := job("v1", "")
	first.Spec.Reload = ""
	if _, err := cycle(t, r, first); err != nil {
		t.Fatal(err)
	}
	startNginx(t, nginx, dir, dest)
	waitBody(t, listen, "v1")

	// A new version: checked, swapped, reloaded.
	res, err := cycle(t, r, job("v2", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Changed || !res[0].Reloaded {
		t.Fatalf("%+v", res[0])
	}
	waitBody(t, listen, "v2")

	// A config nginx rejects: the check fails with nginx's own message.
	_, err = cycle(t, r, job("v3", "bogus_directive on;"))
	if err == nil || !strings.Contains(err.Error(), `unknown directive "bogus_directive"`) {
		t.Fatalf("error %v, want nginx's complaint", err)
	}
	if got := readFile(t, dest); !strings.Contains(got, `"v2\n"`) {
		t.Errorf("destination changed:\n%s", got)
	}
	waitBody(t, listen, "v2")
	noTemps(t, dir)

	// Same output again: nothing written, no reload.
	res, err = cycle(t, r, job("v2", ""))
	if err != nil || res[0].Changed || res[0].Reloaded {
		t.Fatalf("unchanged: %+v %v", res[0], err)
	}
}

// freeAddr returns a free loopback address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startNginx runs nginx in the foreground on conf and stops it at cleanup.
func startNginx(t *testing.T, nginx, dir, conf string) {
	t.Helper()
	cmd := exec.Command(nginx, "-p", dir+"/", "-e", dir+"/error.log", "-c", conf)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// waitBody polls addr until it answers body (nginx applies a reload
// asynchronously) or fails after a generous deadline.
func waitBody(t *testing.T, addr, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if last = strings.TrimSpace(string(b)); last == body {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx at %s answers %q, want %q", addr, last, body)
}
