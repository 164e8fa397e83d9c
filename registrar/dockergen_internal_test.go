package registrar

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runtime"
)

// TestHostileCorpusDockerGen: the docker-gen dialect prints metadata as
// docker-gen does (unescaped), so the registrar's container records are
// its protection. Each corpus value in VIRTUAL_HOST, VIRTUAL_PORT and the
// container name, cleaned by the registrar, rendered by an nginx-proxy
// style docker-gen template: no name but the good ones is served, no line
// is injected, and the real nginx -t accepts it.
func TestHostileCorpusDockerGen(t *testing.T) {
	tm, err := dialect.Parse("../render/dialect/testdata/docker-gen/nginx-proxy.tmpl", dialect.Options{Dialect: dialect.DockerGen})
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.NewNginx(t)
	proxy := records.Container{ID: "proxy0123456789", Name: "proxy", Networks: []records.Network{{Name: "n", IP: "10.0.0.1"}}}
	serverName := regexp.MustCompile(`(?m)^\s*server_name\s+([^;]*);`)
	for _, f := range []string{"VIRTUAL_HOST", "VIRTUAL_PORT", "name"} {
		for _, v := range recordstest.Corpus() {
			t.Run(f+"/"+v.Case, func(t *testing.T) {
				c := runtime.Container{ID: strings.Repeat("e", 64), Name: "web-1", Image: "web:1", State: runtime.StateRunning, IP: "10.0.0.2",
					Ports: []runtime.Port{{Port: 80, Proto: "tcp"}, {Port: 8080, Proto: "tcp"}}, Networks: []runtime.Network{{Name: "n", IP: "10.0.0.2"}},
					Env: []string{"VIRTUAL_HOST=good.localhost", "VIRTUAL_PORT=8080"}}
				want := []string{"_", "good.localhost"}
				switch f {
				case "VIRTUAL_HOST":
					c.Env[0] += "," + v.Value
					if v.Valid(recordstest.Host) {
						want = append(want, v.Value)
					}
				case "VIRTUAL_PORT":
					c.Env[1] = "VIRTUAL_PORT=" + v.Value
					want = want[:1] // an invalid port takes the host with it
				case "name":
					c.Name = v.Value
				}
				d := recordsFor("/berth", "h", c, records.StateRunning)
				var rc records.Container
				if err := json.Unmarshal(d.kvs[records.ContainerKey("/berth", "h", c.ID)], &rc); err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				in := dialect.Input{Containers: []records.Container{proxy, rc}, CurrentContainerID: proxy.ID, Env: map[string]string{"HTTP_PORT": n.Addr}}
				if err := tm.Execute(&out, in); err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, m := range serverName.FindAllStringSubmatch(out.String(), -1) {
					names = append(names, strings.Fields(m[1])...)
				}
				if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
					t.Fatalf("server names %q, want %q\n%s", names, want, out.Bytes())
				}
				for _, line := range strings.Split(out.String(), "\n") {
					if line = strings.TrimSpace(line); strings.HasPrefix(line, "#") && strings.ContainsAny(line[1:], "#;{}") {
						t.Fatalf("comment line %q", line)
					}
				}
				if len(v.Value) > records.MaxLabelLen && f == "VIRTUAL_HOST" && v.Valid(recordstest.Host) {
					return // nginx's default server_names_hash_bucket_size is the template's to raise, not the registrar's
				}
				conf := n.Prelude() + out.String() + "}\n"
				if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
					t.Fatal(err)
				}
				check := strings.ReplaceAll(n.CheckCommand(), "{{.src}}", n.Conf)
				if b, err := (render.Exec{}).Run(t.Context(), []string{"/bin/sh", "-c", check}); err != nil {
					t.Fatalf("nginx -t: %v\n%s\n%s", err, b, conf)
				}
			})
		}
	}
}
