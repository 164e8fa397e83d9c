package embedded

import (
	"errors"
	"fmt"
	"path"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

// defaultCaps is Docker's default capability set.
func defaultCaps() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// maskedPaths and readonlyPaths are Docker's masked and read-only /proc
// and /sys paths.
func maskedPaths() []string {
	return []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

func readonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// deniedSyscalls is the default seccomp profile: everything is allowed
// except what Docker's default profile withholds from a container without
// extra capabilities (kernel modules, mounts, namespaces, clocks, keyrings,
// tracing other processes' memory, BPF, perf, reboot, swap, ...).
func deniedSyscalls() []string {
	return []string{
		"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
		"delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
		"get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
		"kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount",
		"mount_setattr", "move_mount", "move_pages", "name_to_handle_at", "nfsservctl",
		"open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
		"process_vm_readv", "process_vm_writev", "query_module", "quotactl", "reboot",
		"request_key", "set_mempolicy", "setns", "settimeofday", "stime", "swapoff",
		"swapon", "syslog", "sysfs", "_sysctl", "umount", "umount2", "unshare",
		"uselib", "userfaultfd", "ustat", "vhangup", "adjtimex",
	}
}

// seccompArches are the architectures a process of this machine's
// architecture can make system calls in, as docker lists them. Listing
// only these keeps the filter small: libseccomp compiles it in the
// container's init, on the start path.
func seccompArches() []specs.Arch {
	switch goruntime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	return nil
}

func defaultSeccomp() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: seccompArches(),
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls(), Action: specs.ActErrno, ErrnoRet: &eperm},
			// No new user namespaces through clone either.
			{Names: []string{"clone"}, Action: specs.ActErrno, ErrnoRet: &eperm, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.CLONE_NEWUSER, ValueTwo: unix.CLONE_NEWUSER, Op: specs.OpMaskedEqual},
			}},
		},
	}
}

// OCIParams is what an OCI runtime spec for one container is built from.
type OCIParams struct {
	Rootfs     string // absolute path of the prepared root
	Args       []string
	Env        []string
	Cwd        string
	UID, GID   uint32
	Groups     []uint32
	Hostname   string
	ReadOnly   bool
	Netns      string // path to join; "" with HostNet false: a new empty netns
	HostNet    bool
	CgroupPath string // absolute, e.g. /berth/<mark>/<id>
	Memory     int64
	CPUs       float64
	Pids       int64
	Binds      []runtime.Mount
}

// OCISpec builds the OCI runtime spec of a container with Docker's
// confinement: pid, mount, uts, ipc and net namespaces, Docker's default
// capabilities, no_new_privs, the default seccomp profile, masked and
// read-only /proc paths, and memory, CPU and pids limits. The same spec
// written as config.json runs under the runc binary (berth bench runtime
// does exactly that).
func OCISpec(p OCIParams) *specs.Spec {
	caps := defaultCaps()
	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: p.Rootfs, Readonly: p.ReadOnly},
		Hostname: p.Hostname,
		Process: &specs.Process{
			Args: p.Args, Env: p.Env, Cwd: p.Cwd,
			User:            specs.User{UID: p.UID, GID: p.GID, AdditionalGids: p.Groups},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Permitted: caps, Effective: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath:   p.CgroupPath,
			MaskedPaths:   maskedPaths(),
			ReadonlyPaths: readonlyPaths(),
			Seccomp:       defaultSeccomp(),
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
		},
	}
	if !p.HostNet {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.Netns})
	}
	for _, b := range p.Binds {
		opts := []string{"rbind", "rprivate"}
		if b.ReadOnly {
			opts = append(opts, "ro")
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: b.Destination, Type: "bind", Source: b.Source, Options: opts})
	}
	r := s.Linux.Resources
	if p.Memory > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &p.Memory}
	}
	if p.CPUs > 0 {
		period := uint64(100000)
		quota := int64(p.CPUs * float64(period))
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if p.Pids > 0 {
		r.Pids = &specs.LinuxPids{Limit: &p.Pids}
	}
	return s
}

// merged is a container's effective process configuration after merging
// the image config into the spec the way docker does.
type merged struct {
	Args       []string
	Env        []string
	WorkingDir string
	User       string
	Labels     map[string]string
	Ports      []runtime.Port
}

// mergeConfig applies docker's rules: Env by key (spec wins); an explicit
// entrypoint drops the image's Cmd; Cmd replaces the image's; WorkingDir,
// User default to the image's; labels merge (spec wins); exposed ports are
// the image's plus every published one.
func mergeConfig(spec runtime.Spec, img v1.Config) (merged, error) {
	m := merged{WorkingDir: img.WorkingDir, User: img.User, Labels: map[string]string{}}
	m.Env = mergeEnv(img.Env, spec.Env)
	if !slices.ContainsFunc(m.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		m.Env = append([]string{image.DefaultPath}, m.Env...)
	}
	entry, cmd := spec.Command(img.Entrypoint, img.Cmd)
	m.Args = append(slices.Clone(entry), cmd...)
	if len(m.Args) == 0 {
		return merged{}, runtime.Errorf(runtime.ErrInvalid, "no command specified: the image has no Cmd or Entrypoint and none was given")
	}
	if spec.WorkingDir != "" {
		m.WorkingDir = spec.WorkingDir
	}
	if m.WorkingDir == "" {
		m.WorkingDir = "/"
	}
	if !path.IsAbs(m.WorkingDir) {
		return merged{}, runtime.Errorf(runtime.ErrInvalid, "working dir %q is not absolute", m.WorkingDir)
	}
	if spec.User != "" {
		m.User = spec.User
	}
	for k, v := range img.Labels {
		m.Labels[k] = v
	}
	for k, v := range spec.Labels {
		m.Labels[k] = v
	}
	ports := map[string]runtime.Port{}
	for p := range img.ExposedPorts {
		port, err := runtime.ParsePort(p)
		if err != nil {
			return merged{}, fmt.Errorf("image ExposedPorts: %w", err)
		}
		ports[portKey(port)] = port
	}
	for _, p := range spec.Publish {
		if p.Proto == "" {
			p.Proto = "tcp"
		}
		ports[portKey(p)] = p
	}
	for _, p := range ports {
		m.Ports = append(m.Ports, p)
	}
	slices.SortFunc(m.Ports, func(a, b runtime.Port) int {
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return strings.Compare(a.Proto, b.Proto)
	})
	return m, nil
}

func portKey(p runtime.Port) string { return strconv.Itoa(int(p.Port)) + "/" + p.Proto }

// mergeEnv overlays KEY=VALUE pairs: later keys replace earlier ones in
// place, new keys are appended. A bare KEY in over is ignored (the CLI
// resolves it from its own environment).
func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	idx := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		idx[k] = i
	}
	for _, e := range over {
		k, _, ok := strings.Cut(e, "=")
		if !ok {
			continue
		}
		if i, seen := idx[k]; seen {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	return out
}

// validateSpec rejects what cannot run before anything is created.
func validateSpec(spec runtime.Spec) error {
	var errs []error
	if spec.Image == "" {
		errs = append(errs, errors.New("no image given"))
	}
	if spec.Memory < 0 || (spec.Memory > 0 && spec.Memory < 6<<20) {
		errs = append(errs, fmt.Errorf("invalid memory value %d: the minimum is 6MiB", spec.Memory))
	}
	if spec.CPUs < 0 {
		errs = append(errs, fmt.Errorf("invalid cpus value %g", spec.CPUs))
	}
	if spec.PidsLimit < 0 {
		errs = append(errs, fmt.Errorf("invalid pids limit %d", spec.PidsLimit))
	}
	switch spec.Network {
	case "", runtime.NetworkBridge, runtime.NetworkHost, runtime.NetworkNone:
	default:
		errs = append(errs, fmt.Errorf("unknown network %q (bridge, host or none)", spec.Network))
	}
	if len(spec.Publish) > 0 && spec.Network != "" && spec.Network != runtime.NetworkBridge {
		errs = append(errs, fmt.Errorf("publishing ports needs the bridge network, not %q", spec.Network))
	}
	for _, p := range spec.Publish {
		if p.Port == 0 || p.HostPort == 0 {
			errs = append(errs, fmt.Errorf("publish %d:%d: ports must be 1-65535", p.HostPort, p.Port))
		}
		if p.Proto != "" && p.Proto != "tcp" {
			errs = append(errs, fmt.Errorf("publish %d/%s: only tcp can be published", p.Port, p.Proto))
		}
	}
	for _, v := range spec.Volumes {
		if !path.IsAbs(v.Source) || !path.IsAbs(v.Destination) {
			errs = append(errs, fmt.Errorf("volume %s:%s: both paths must be absolute", v.Source, v.Destination))
		}
	}
	switch spec.Restart.Name {
	case "", "no", "always", "unless-stopped", "on-failure":
	default:
		errs = append(errs, fmt.Errorf("unknown restart policy %q", spec.Restart.Name))
	}
	if spec.Name != "" && !validName(spec.Name) {
		errs = append(errs, fmt.Errorf("invalid container name %q: use [a-zA-Z0-9][a-zA-Z0-9_.-]*", spec.Name))
	}
	if h := spec.Health; h != nil && len(h.Cmd) == 0 {
		errs = append(errs, errors.New("health check without a command"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", runtime.ErrInvalid, err)
	}
	return nil
}

func validName(n string) bool {
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return false
		}
	}
	return n != ""
}
