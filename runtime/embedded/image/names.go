package image

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berthd/berth/runtime"
)

// Docker's reference grammar (distribution/reference), which
// go-containerregistry checks only by charset: it takes "../x" for a
// repository and ".." for a registry.
var (
	pathComponent   = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	domainComponent = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$`)
)

// checkRepository refuses a repository whose registry or path is not in
// Docker's reference grammar: a path component such as "..", ".", "" or
// ".hidden", or a registry that is not a host name, IP address or
// [IPv6] with an optional port. Such names could walk out of a directory
// wherever a name becomes a path, and no registry serves them.
func checkRepository(ref string, r name.Repository) error {
	for c := range strings.SplitSeq(r.RepositoryStr(), "/") {
		if !pathComponent.MatchString(c) {
			return fmt.Errorf("bad image reference %q: repository component %q is not lower-case letters and digits separated by '.', '_', '__' or '-' (%w)", ref, c, runtime.ErrInvalid)
		}
	}
	reg := r.RegistryStr()
	if reg == name.DefaultRegistry {
		return nil
	}
	host := reg
	if i := strings.LastIndexByte(reg, ':'); i >= 0 && !strings.HasSuffix(reg, "]") {
		host = reg[:i]
	}
	if v6, ok := strings.CutPrefix(host, "["); ok {
		if a, err := netip.ParseAddr(strings.TrimSuffix(v6, "]")); err == nil && a.Is6() && strings.HasSuffix(v6, "]") {
			return nil
		}
		return fmt.Errorf("bad image reference %q: registry %q (%w)", ref, reg, runtime.ErrInvalid)
	}
	for c := range strings.SplitSeq(host, ".") {
		if !domainComponent.MatchString(c) {
			return fmt.Errorf("bad image reference %q: registry %q is not a host name (%w)", ref, reg, runtime.ErrInvalid)
		}
	}
	return nil
}
