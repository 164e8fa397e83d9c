package embedded

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	rdebug "runtime/debug"
	"strings"

	"golang.org/x/sys/unix"
)

// InitBinaryName is the companion init binary New looks for next to the
// running executable: a small program that imports only package
// containerinit (runtime/embedded/containerinit/cmd/berth-init).
const InitBinaryName = "berth-init"

// initMemfdName names the sealed memfd the companion is kept in; the
// container init's C constructor (containerinit/handoff.go) looks for
// "/memfd:<this> (deleted)" among its parent's descriptors.
const initMemfdName = "berth-init"

// defaultInitBinary is InitBinaryName in the directory of the running
// executable ("" if that cannot be told).
func defaultInitBinary() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(exe), InitBinaryName)
}

// loadInitBinary checks that the companion at path was built with the
// same Go and the same libcontainer as this binary (the init protocol
// between libcontainer's two sides is not stable across versions) and
// copies it into a sealed memfd (write, grow and shrink sealed: nothing,
// not even a container that reaches it through /proc/<pid>/exe, can
// change it; see CVE-2019-5736). The daemon keeps the memfd open; every
// container init re-executes from it.
func loadInitBinary(path string) (*os.File, error) {
	m, err := sealedCopy(path)
	if err != nil {
		return nil, err
	}
	// Checked on the sealed copy: what runs is what was checked.
	if err := compatibleBuild(path, m); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// sealedCopy copies the executable at path into a memfd named
// initMemfdName, sealed against writes, growing and shrinking.
func sealedCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("%s: not an executable file (%s)", path, st.Mode())
	}
	fd, err := unix.MemfdCreate(initMemfdName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // kernels before 6.3 know no MFD_EXEC
		fd, err = unix.MemfdCreate(initMemfdName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", path, err)
	}
	m := os.NewFile(uintptr(fd), "memfd:"+initMemfdName)
	n, err := io.Copy(m, src)
	if err == nil && n != st.Size() {
		err = fmt.Errorf("copied %d of %d bytes", n, st.Size())
	}
	if err == nil {
		err = m.Chmod(0o511)
	}
	if err == nil {
		const sealExec = 0x20 // F_SEAL_EXEC, Linux 6.3; optional
		_, _ = unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, sealExec)
		_, err = unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("seal a copy of %s: %w", path, err)
	}
	return m, nil
}

// compatibleBuild reports why bin (a copy of path) cannot serve as this
// binary's container init: a different Go version, a different version of
// a github.com/opencontainers module, other build tags (seccomp) or a
// different commit.
func compatibleBuild(path string, bin io.ReaderAt) error {
	self, ok := rdebug.ReadBuildInfo()
	if !ok {
		return errors.New("this binary has no build information to compare with")
	}
	other, err := buildinfo.Read(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if self.GoVersion != other.GoVersion {
		return fmt.Errorf("%s was built with %s, this binary with %s", path, other.GoVersion, self.GoVersion)
	}
	mods := func(bi *rdebug.BuildInfo) map[string]string {
		m := map[string]string{}
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			if strings.HasPrefix(d.Path, "github.com/opencontainers/") {
				m[d.Path] = d.Version + " " + d.Sum
			}
		}
		return m
	}
	mine, theirs := mods(self), mods(other)
	if len(self.Deps) == 0 { // a go test binary: it lists no modules
		mine = theirs
	}
	for _, p := range []string{"github.com/opencontainers/runc", "github.com/opencontainers/cgroups"} {
		if mine[p] != theirs[p] {
			return fmt.Errorf("%s has %s %q, this binary %q", path, p, theirs[p], mine[p])
		}
	}
	setting := func(bi *rdebug.BuildInfo, k string) string {
		for _, s := range bi.Settings {
			if s.Key == k {
				return s.Value
			}
		}
		return ""
	}
	if a, b := setting(self, "-tags"), setting(other, "-tags"); a != b {
		return fmt.Errorf("%s was built with build tags %q, this binary with %q", path, b, a)
	}
	if a, b := setting(self, "vcs.revision"), setting(other, "vcs.revision"); a != "" && b != "" && a != b {
		return fmt.Errorf("%s was built from commit %s, this binary from %s", path, b, a)
	}
	return nil
}

// openInitBinary loads the companion named by the options for New: a
// path given by WithInitBinary must work; the default one is used when it
// exists and is compatible, else containers start by re-executing this
// binary (slower), which is logged. It returns nil for no companion.
func openInitBinary(o options) (*os.File, string, error) {
	path, explicit := o.initBinary, o.initBinarySet
	if !explicit {
		path = defaultInitBinary()
	}
	if path == "" {
		return nil, "", nil
	}
	f, err := loadInitBinary(path)
	switch {
	case err == nil:
		o.log.Debug("container init: companion binary", "path", path)
		return f, path, nil
	case explicit:
		return nil, "", fmt.Errorf("container init binary: %w", err)
	case errors.Is(err, os.ErrNotExist):
		o.log.Warn("container init: no "+InitBinaryName+" next to this binary; containers start by re-executing it, which is slower (make build installs both)", "looked_for", path)
	default:
		o.log.Warn("container init: "+InitBinaryName+" not usable; containers start by re-executing this binary, which is slower", "err", err)
	}
	return nil, "", nil
}

// InitBinary is the companion binary containers' init processes are
// handed over to, "" when they re-execute this binary.
func (r *Runtime) InitBinary() string { return r.initPath }
