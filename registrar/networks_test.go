package registrar_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runtime"
)

// TestSeveralNetworks: on the real Docker Engine, a container on two
// networks is recorded at the address of the network its label
// berth.network names, else of the first network by name, and the same
// at every registration (the peers pick one at random).
func TestSeveralNetworks(t *testing.T) {
	e := newEnv(t)
	other := testenv.DockerNetwork(t, e.img)
	first, second := min(e.net, other), max(e.net, other)
	e.start(t, registrar.Config{})
	run := func(name string, labels ...string) (runtime.Container, map[string]string) {
		t.Helper()
		args := []string{"create", "--name", name + "-" + strings.TrimPrefix(e.host, "host-"), "--network", e.net,
			"--label", e.img.Label, "--label", "berth.service=multi"}
		for _, l := range labels {
			args = append(args, "--label", l)
		}
		out, err := exec.Command("docker", append(args, e.img.Ref)...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker create: %v\n%s", err, out)
		}
		id := strings.TrimSpace(string(out))
		if out, err := exec.Command("docker", "network", "connect", other, id).CombinedOutput(); err != nil {
			t.Fatalf("docker network connect: %v\n%s", err, out)
		}
		if out, err := exec.Command("docker", "start", id).CombinedOutput(); err != nil {
			t.Fatalf("docker start: %v\n%s", err, out)
		}
		out, err = exec.Command("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", id).Output()
		if err != nil {
			t.Fatal(err)
		}
		var nets map[string]struct{ IPAddress string }
		if err := json.Unmarshal(out, &nets); err != nil {
			t.Fatal(err)
		}
		ips := map[string]string{}
		for n, ep := range nets {
			ips[n] = ep.IPAddress
		}
		if ips[first] == "" || ips[second] == "" {
			t.Fatalf("container not on both networks: %v", ips)
		}
		return runtime.Container{ID: id}, ips
	}
	c, ips := run("plain")
	in := e.instance(t, "multi", c, func(in records.Instance) bool { return in.IP != "" })
	if in.IP != ips[first] {
		t.Errorf("without a label: recorded at %s, want %s (network %s, the first by name; the other: %s)", in.IP, ips[first], first, ips[second])
	}
	c, ips = run("labelled", "berth.network="+second)
	in = e.instance(t, "multi", c, func(in records.Instance) bool { return in.IP != "" })
	if in.IP != ips[second] {
		t.Errorf("with berth.network=%s: recorded at %s, want %s", second, in.IP, ips[second])
	}
}
