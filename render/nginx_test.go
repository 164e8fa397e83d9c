package render

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
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
	n := testenv.NewNginx(t)
	dir, dest, listen := n.Dir, n.Conf, n.Addr
	spec := Spec{
		Name:    "nginx",
		Dest:    dest,
		Check:   n.CheckCommand(),
		Reload:  n.ReloadCommand(),
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
	n.Start(t)
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
