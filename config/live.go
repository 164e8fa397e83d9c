package config

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// LiveKinds are the values of a template's live key: the proxies whose
// upstream membership berth applies without a reload (package endpoints).
func LiveKinds() []string { return []string{"nginx-lua", "haproxy"} }

// DefaultLiveRoot is the directory under which a live template's
// directory is made when it sets no live_dir.
const DefaultLiveRoot = "/run/berth/live"

// maxLiveDir keeps <live_dir>/endpoints.sock within a unix socket path
// (108 bytes with its NUL).
const maxLiveDir = 107 - len("/endpoints.sock")

var (
	liveDirChars = regexp.MustCompile(`^/[A-Za-z0-9/._-]*$`)
	unsafeInName = regexp.MustCompile(`[^A-Za-z0-9._-]`)
)

// setLive checks and sets the live keys: kind one of LiveKinds (or empty),
// dir an absolute path of letters, digits and / . _ - (it is written into
// the proxy's configuration and Lua), by default
// DefaultLiveRoot/<template name with other characters as "_">.
func (t *Template) setLive(kind, dir string) error {
	if kind == "" {
		if dir != "" {
			return fmt.Errorf("live_dir is set but live is not")
		}
		return nil
	}
	ok := false
	for _, k := range LiveKinds() {
		ok = ok || k == kind
	}
	if !ok {
		return fmt.Errorf("live %q: want one of %q", kind, LiveKinds())
	}
	if dir == "" {
		dir = filepath.Join(DefaultLiveRoot, unsafeInName.ReplaceAllString(t.Name, "_"))
	}
	dir = filepath.Clean(dir)
	switch {
	case !liveDirChars.MatchString(dir):
		return fmt.Errorf("live_dir %q: want an absolute path of letters, digits and / . _ -", dir)
	case len(dir) > maxLiveDir:
		return fmt.Errorf("live_dir %q: longer than %d bytes (a unix socket path goes in it)", dir, maxLiveDir)
	}
	t.Live, t.LiveDir = kind, dir
	return nil
}
