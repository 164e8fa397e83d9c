package dockergen

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/dockergen/dockertest"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime/docker"
)

// TestCurrentContainerID runs the probe (which looks its container ID up
// as berth does) in real containers — Docker's defaults, a private cgroup
// namespace (only the mountinfo hostname line names the container), a
// custom hostname — and renders $.Docker.CurrentContainerID and
// $.CurrentContainer with the ID each found.
func TestCurrentContainerID(t *testing.T) {
	img := dockertest.BuildImage(t)
	network := testenv.DockerNetwork(t, img)
	rt := dockertest.Engine(t)
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.tmpl")
	os.WriteFile(tmpl, []byte(`{{ $.Docker.CurrentContainerID }} {{ with $.CurrentContainer }}{{ .Name }}{{ end }}`), 0o644)
	tp, err := dialect.Parse(tmpl, dialect.Options{Dialect: dialect.DockerGen})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, args string }{
		{"defaults", ""},
		{"private cgroup namespace", "--cgroupns private"},
		{"custom hostname", "--cgroupns private --hostname web.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run", "-d", "--label", img.Label, "--network", network}, strings.Fields(tc.args)...)
			out, err := exec.Command("docker", append(args, img.Ref)...).CombinedOutput()
			if err != nil {
				t.Fatalf("docker run: %v %s", err, out)
			}
			id := strings.TrimSpace(string(out))
			c, err := rt.Inspect(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			got := dockertest.Get(t, c.IP, "/id")
			if got != id {
				t.Fatalf("in container %s the lookup found %q", id, got)
			}
			containers, err := rt.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			f, _ := ParseFilter(map[string][]string{"label": {img.Label}}, Filters{})
			var buf bytes.Buffer
			if err := tp.Execute(&buf, input(docker.Engine{}, containers, f, got)); err != nil {
				t.Fatal(err)
			}
			if want := id + " " + c.Name; buf.String() != want {
				t.Fatalf("rendered %q, want %q", buf.String(), want)
			}
		})
	}
}
