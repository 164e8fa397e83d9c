package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
	"github.com/berthd/berth/runtime/embedded/embeddedtest"
)

// runOutput runs cmd to completion and returns its exit code and output.
func runOutput(t *testing.T, r *embedded.Runtime, spec runtime.Spec) (runtime.Container, string) {
	t.Helper()
	c, err := r.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("run %v: %v", spec.Cmd, err)
	}
	c = waitState(t, r, c.ID, runtime.StateExited)
	return c, logsOf(t, r, c.ID)
}

func statusField(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestConfinement(t *testing.T) {
	r := embeddedtest.NewRuntime(t, embeddedtest.NewEnv(t))
	importBusybox(t, r)
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "in.txt"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		spec  runtime.Spec
		check func(t *testing.T, c runtime.Container, out string)
	}{
		{"capabilities, no_new_privs, seccomp", runtime.Spec{Cmd: []string{"cat", "/proc/self/status"}}, func(t *testing.T, _ runtime.Container, out string) {
			// Docker's default set: chown dac_override fowner fsetid kill setgid
			// setuid setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap.
			for key, want := range map[string]string{"CapEff": "00000000a80425fb", "CapBnd": "00000000a80425fb", "CapPrm": "00000000a80425fb", "NoNewPrivs": "1", "Seccomp": "2"} {
				if got := statusField(out, key); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
		}},
		{"hostname, hosts, resolv.conf", runtime.Spec{Hostname: "box1", Cmd: []string{"sh", "-c", "hostname; cat /etc/hostname; grep box1 /etc/hosts; grep -c '^nameserver' /etc/resolv.conf; grep -c 'nameserver 127' /etc/resolv.conf"}}, func(t *testing.T, c runtime.Container, out string) {
			if want := "box1\nbox1\n" + c.IP + "\tbox1\n"; !strings.HasPrefix(out, want) || strings.HasSuffix(out, "\n0\n0\n") || !strings.HasSuffix(out, "\n0\n") {
				t.Errorf("output %q: want %q, nameservers, none on loopback", out, want)
			}
		}},
		{"mount denied", runtime.Spec{Cmd: []string{"sh", "-c", "mount -t tmpfs none /tmp && echo mounted; exit 0"}}, func(t *testing.T, _ runtime.Container, out string) {
			if strings.Contains(out, "mounted") {
				t.Errorf("mount succeeded inside the container: %q", out)
			}
		}},
		{"masked and read-only proc", runtime.Spec{Cmd: []string{"sh", "-c", "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/domainname && echo wrote; exit 0"}}, func(t *testing.T, _ runtime.Container, out string) {
			if !strings.HasPrefix(out, "0\n") || strings.Contains(out, "wrote") {
				t.Errorf("output %q: /proc/timer_list must read empty and /proc/sys must be read-only", out)
			}
		}},
		{"env, workdir, user", runtime.Spec{Env: []string{"A=1"}, WorkingDir: "/tmp", User: "nobody", Cmd: []string{"sh", "-c", "echo $A $(pwd) $(id -u):$(id -g)"}}, func(t *testing.T, _ runtime.Container, out string) {
			if out != "1 /tmp 65534:65534\n" {
				t.Errorf("output %q", out)
			}
		}},
		{"read-only root and volumes", runtime.Spec{ReadOnly: true, Volumes: []runtime.Mount{{Source: vol, Destination: "/data", ReadOnly: true}, {Source: filepath.Join(vol, "rw"), Destination: "/rw"}},
			Cmd: []string{"sh", "-c", "cat /data/in.txt; touch /x 2>/dev/null || echo root-ro; touch /data/y 2>/dev/null || echo vol-ro; echo hi > /rw/out"}}, func(t *testing.T, _ runtime.Container, out string) {
			if out != "from host\nroot-ro\nvol-ro\n" {
				t.Errorf("output %q", out)
			}
			if b, _ := os.ReadFile(filepath.Join(vol, "rw", "out")); string(b) != "hi\n" {
				t.Errorf("rw volume content %q", b)
			}
		}},
		{"pids limit", runtime.Spec{PidsLimit: 10, Cmd: []string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done 2>&1; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null; exit 0"}}, func(t *testing.T, _ runtime.Container, out string) {
			if !strings.Contains(out, "can't fork") {
				t.Errorf("output %q: forking past the pids limit must fail", out)
			}
		}},
		{"memory limit OOM kill", runtime.Spec{Memory: 32 << 20, Cmd: []string{"sh", "-c", "x=a; while true; do x=$x$x; done"}}, func(t *testing.T, c runtime.Container, out string) {
			if !c.OOMKilled || c.ExitCode != 137 {
				t.Errorf("oom_killed=%v exit=%d, want true 137 (output %q)", c.OOMKilled, c.ExitCode, out)
			}
		}},
		{"network none", runtime.Spec{Network: runtime.NetworkNone, Cmd: []string{"sh", "-c", "ls /sys/class/net"}}, func(t *testing.T, _ runtime.Container, out string) {
			if out != "lo\n" {
				t.Errorf("interfaces %q, want only lo", out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Image = "busybox:test"
			c, out := runOutput(t, r, tc.spec)
			tc.check(t, c, out)
		})
	}
}

// TestCgroupLimits reads the limits from the host side of the container's
// cgroups.
func TestCgroupLimits(t *testing.T) {
	env := embeddedtest.NewEnv(t)
	r := embeddedtest.NewRuntime(t, env)
	importBusybox(t, r)
	c, err := r.Run(context.Background(), runtime.Spec{Image: "busybox:test", Cmd: []string{"sleep", "1000"},
		Memory: 32 << 20, CPUs: 0.5, PidsLimit: 20})
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(env.CgroupParent, r.Mark(), c.ID)
	want := map[string]string{
		"memory/" + cg + "/memory.limit_in_bytes": "33554432",
		"cpu/" + cg + "/cpu.cfs_quota_us":         "50000",
		"cpu/" + cg + "/cpu.cfs_period_us":        "100000",
		"pids/" + cg + "/pids.max":                "20",
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		want = map[string]string{cg + "/memory.max": "33554432", cg + "/cpu.max": "50000 100000", cg + "/pids.max": "20"}
	}
	for f, v := range want {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", f))
		if err != nil || strings.TrimSpace(string(b)) != v {
			t.Errorf("%s = %q (%v), want %q", f, strings.TrimSpace(string(b)), err, v)
		}
	}
	b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(c.Pid), "cgroup"))
	if err != nil || !strings.Contains(string(b), "/"+cg) {
		t.Errorf("pid %d cgroups %q (%v), want %s", c.Pid, b, err, cg)
	}
}
