package selfid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capture is what a process saw in testdata/<dir>: the three files, read
// on this machine (cgroup v1, Docker 20.10) by the probe of
// dockergen/dockertest in a container (default, and --cgroupns private)
// and on the host while a container with --ipc shareable ran.
type capture struct {
	id                        string
	cpuset, cgroup, mountinfo []byte
}

func load(t *testing.T, dir string) capture {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return capture{
		id:     strings.TrimSpace(string(read("id"))),
		cpuset: read("proc_1_cpuset"), cgroup: read("proc_self_cgroup"), mountinfo: read("proc_self_mountinfo"),
	}
}

func TestLookup(t *testing.T) {
	def, private, host := load(t, "default"), load(t, "private"), load(t, "host")
	tests := []struct {
		name, hostname string
		contents       [][]byte
		want           string
	}{
		{"cgroup v1 paths", def.id[:12], [][]byte{def.cpuset, def.cgroup, def.mountinfo}, def.id},
		{"cgroup v1 paths, custom hostname", "web", [][]byte{def.cpuset, def.cgroup, def.mountinfo}, def.id},
		{"private cgroup namespace: the hostname mount", private.id[:12], [][]byte{private.cpuset, private.cgroup, private.mountinfo}, private.id},
		{"private cgroup namespace, custom hostname", "web.example", [][]byte{private.cpuset, private.cgroup, private.mountinfo}, private.id},
		{"host with a shareable-IPC container's shm mount", "vm", [][]byte{host.cpuset, host.cgroup, host.mountinfo}, ""},
		// Two containers' IDs in view: the one starting with $HOSTNAME wins
		// over an earlier one; without a short-ID hostname the first does.
		{"hostname chooses", private.id[:12], [][]byte{def.cpuset, def.cgroup, private.mountinfo}, private.id},
		{"first one without a short-ID hostname", "vm", [][]byte{def.cpuset, def.cgroup, private.mountinfo}, def.id},
		{"unreadable files", def.id[:12], [][]byte{nil, nil, nil}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Lookup(tc.hostname, tc.contents...); got != tc.want {
				t.Fatalf("Lookup = %q, want %q", got, tc.want)
			}
		})
	}
}
