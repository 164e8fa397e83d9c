package embedded

import (
	"strings"
	"testing"
)

// TestCheckHost covers hosts this machine is not (non-root, no overlayfs,
// no cgroups): the probe is replaced by the values it would return.
func TestCheckHost(t *testing.T) {
	good := hostInfo{EUID: 0, Overlay: true, CgroupV1: true}
	tests := []struct {
		name    string
		h       hostInfo
		missing []string
	}{
		{"v1 host", good, nil},
		{"v2 host", hostInfo{Overlay: true, CgroupV2: true, MemoryInV2: true}, nil},
		{"not root", hostInfo{EUID: 1000, Overlay: true, CgroupV1: true}, []string{"root (running as uid 1000)"}},
		{"no overlayfs", hostInfo{CgroupV1: true}, []string{"overlayfs"}},
		{"no cgroups", hostInfo{Overlay: true}, []string{"cgroups with the memory controller"}},
		{"v2 without memory", hostInfo{Overlay: true, CgroupV2: true}, []string{"cgroups with the memory controller"}},
		{"nothing", hostInfo{EUID: 1}, []string{"root", "overlayfs", "cgroups"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHost(tc.h)
			if len(tc.missing) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range tc.missing {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not name %q", err, m)
				}
			}
		})
	}
	if err := checkHost(probeHost()); err != nil {
		t.Errorf("this host (CI runs as root with overlayfs and cgroups): %v", err)
	}
}
