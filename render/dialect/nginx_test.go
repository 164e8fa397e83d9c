package dialect

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/berthd/berth/records"
)

// TestDockerGenNginxProxy renders a docker-gen reverse-proxy template (in
// the style of nginx-proxy's nginx.tmpl) from a container fixture, compares
// it with its golden file, and has the real nginx check the result.
func TestDockerGenNginxProxy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "docker-gen", "containers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cs []records.Container
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cs); err != nil {
		t.Fatal(err)
	}
	tm, err := Parse(filepath.Join("testdata", "docker-gen", "nginx-proxy.tmpl"), Options{Dialect: DockerGen, MissingKeyError: false})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	in := Input{Containers: cs, CurrentContainerID: "0123456789abproxy", Env: map[string]string{"HTTP_PORT": "8080"}}
	if err := tm.Execute(&out, in); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, filepath.Join("testdata", "golden", "docker-gen", "nginx-proxy.conf.golden"), out.Bytes())
	nginxCheck(t, out.Bytes())
}

// nginxCheck runs nginx -t on a configuration whose http block includes
// conf.
func nginxCheck(t *testing.T, conf []byte) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "proxy.conf"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	main := `daemon off;
pid ` + filepath.Join(dir, "nginx.pid") + `;
error_log ` + filepath.Join(dir, "error.log") + `;
events {}
http {
  access_log off;
  client_body_temp_path ` + filepath.Join(dir, "body") + `;
  proxy_temp_path ` + filepath.Join(dir, "proxy") + `;
  fastcgi_temp_path ` + filepath.Join(dir, "fastcgi") + `;
  uwsgi_temp_path ` + filepath.Join(dir, "uwsgi") + `;
  scgi_temp_path ` + filepath.Join(dir, "scgi") + `;
  include ` + filepath.Join(dir, "proxy.conf") + `;
}
`
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, b)
	}
}
