package embedded

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
)

// hostInfo is what the runtime needs from the host.
type hostInfo struct {
	EUID       int
	Overlay    bool // "overlay" in /proc/filesystems
	CgroupV1   bool // /sys/fs/cgroup/memory exists
	CgroupV2   bool // /sys/fs/cgroup/cgroup.controllers exists
	MemoryInV2 bool // ... and lists memory
}

func probeHost() hostInfo {
	h := hostInfo{EUID: os.Geteuid()}
	if b, err := os.ReadFile("/proc/filesystems"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(strings.TrimPrefix(l, "nodev")) == "overlay" {
				h.Overlay = true
			}
		}
	}
	if fi, err := os.Stat("/sys/fs/cgroup/memory"); err == nil && fi.IsDir() {
		h.CgroupV1 = true
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		h.CgroupV2 = true
		h.MemoryInV2 = strings.Contains(string(b), "memory")
	}
	return h
}

// checkHost names every missing requirement at once.
func checkHost(h hostInfo) error {
	var missing []string
	if h.EUID != 0 {
		missing = append(missing, fmt.Sprintf("root (running as uid %d)", h.EUID))
	}
	if !h.Overlay {
		missing = append(missing, "overlayfs (no \"overlay\" in /proc/filesystems; try modprobe overlay)")
	}
	if !h.CgroupV1 && !(h.CgroupV2 && h.MemoryInV2) {
		missing = append(missing, "cgroups with the memory controller (neither /sys/fs/cgroup/memory nor a cgroup2 /sys/fs/cgroup with memory)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("embedded runtime cannot run here, missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// mountRootfs mounts the overlay of lower (top first) with the container's
// upper dir at dir/rootfs.
func mountRootfs(dir string, lower []string) error {
	target := filepath.Join(dir, "rootfs")
	_ = unix.Unmount(target, unix.MNT_DETACH)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		strings.Join(lower, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options for %d layers exceed a page", len(lower))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

func unmountRootfs(dir string) error {
	target := filepath.Join(dir, "rootfs")
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// mountsUnder lists mount points below dir, from /proc/self/mountinfo.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	return out
}

// cgroupDirs lists the directories of a cgroup path in every hierarchy
// (v1 controllers and the v2 unified one).
func cgroupDirs(path string) []string {
	var out []string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{filepath.Join("/sys/fs/cgroup", path)}
	}
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		out = append(out, filepath.Join("/sys/fs/cgroup", e.Name(), path))
	}
	return out
}

// killCgroup SIGKILLs every process in a container cgroup.
func killCgroup(path string) {
	for _, d := range cgroupDirs(path) {
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
	}
}

// removeCgroup kills what is left in a container cgroup and removes it.
func removeCgroup(path string) {
	killCgroup(path)
	for _, d := range cgroupDirs(path) {
		_ = os.Remove(d)
	}
}

// removeCgroupParent removes a runtime's cgroup root (/<parent>/<mark>)
// when no container is left in it, and then the parent, shared by every
// daemon, if it is empty too.
func removeCgroupParent(root string) {
	for _, p := range []string{root, filepath.Dir(root)} {
		for _, d := range cgroupDirs(p) {
			_ = os.Remove(d)
		}
	}
}

// oomKilled reports whether the kernel's OOM killer acted in the
// container's memory cgroup.
func oomKilled(path string) bool {
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", path, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", path, "memory.events"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok && strings.TrimSpace(v) != "0" {
				return true
			}
		}
	}
	return false
}

// writeEtcFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf into its mounted root (so into its upper dir), with
// symlinks resolved inside the root. Writing them costs less at start
// than docker's three bind mounts.
func writeEtcFiles(rootfs string, c runtime.Container) error {
	hostname := c.Hostname
	var hosts bytes.Buffer
	if c.NetworkMode == runtime.NetworkHost {
		b, _ := os.ReadFile("/etc/hosts")
		hosts.Write(b)
	} else {
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
		hosts.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
		if c.IP != "" {
			fmt.Fprintf(&hosts, "%s\t%s\n", c.IP, hostname)
		}
	}
	files := map[string][]byte{
		"hosts":       hosts.Bytes(),
		"hostname":    []byte(hostname + "\n"),
		"resolv.conf": resolvConf(c.NetworkMode == runtime.NetworkHost),
	}
	for name, b := range files {
		p, err := securejoin.SecureJoin(rootfs, "/etc/"+name)
		if err == nil {
			err = os.MkdirAll(filepath.Dir(p), 0o755)
		}
		if err == nil {
			_ = os.Remove(p) // a symlink or read-only file from the image is replaced
			err = os.WriteFile(p, b, 0o644)
		}
		if err != nil {
			return fmt.Errorf("write /etc/%s: %w", name, err)
		}
	}
	return nil
}

// resolvConf is the host's resolv.conf; without host networking, loopback
// nameservers (unreachable from the container) are dropped and, if none
// remain, docker's fallback servers are used.
func resolvConf(hostNet bool) []byte {
	b, _ := os.ReadFile("/etc/resolv.conf")
	if hostNet {
		return b
	}
	var out bytes.Buffer
	servers := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
			servers++
		}
		if strings.TrimSpace(l) != "" {
			out.WriteString(l + "\n")
		}
	}
	if servers == 0 {
		out.WriteString("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
	}
	return out.Bytes()
}
