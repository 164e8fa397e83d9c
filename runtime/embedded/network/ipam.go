package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// ErrExhausted: every address of the subnet is allocated.
var ErrExhausted = errors.New("no free address in subnet")

// ipam allocates addresses of one subnet, persisted in a JSON file and
// guarded by an flock on a sibling lock file, so two processes sharing a
// state dir never hand out one address twice.
type ipam struct {
	path   string
	subnet netip.Prefix
}

type ipamState struct {
	Subnet string            `json:"subnet"`
	Last   string            `json:"last,omitempty"`
	Allocs map[string]string `json:"allocs"` // ip → container id
}

// gateway is the subnet's first host address, owned by the bridge.
func gateway(p netip.Prefix) netip.Addr { return p.Masked().Addr().Next() }

// update runs fn on the state under the lock and writes it back when fn
// succeeds.
func (a *ipam) update(fn func(st *ipamState) error) error {
	lock, err := os.OpenFile(a.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ipam: lock %s: %w", lock.Name(), err)
	}
	st := ipamState{Allocs: map[string]string{}}
	b, err := os.ReadFile(a.path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("ipam: %s: %w", a.path, err)
		}
		if st.Allocs == nil {
			st.Allocs = map[string]string{}
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("ipam: %w", err)
	}
	if st.Subnet != "" && st.Subnet != a.subnet.String() && len(st.Allocs) > 0 {
		return fmt.Errorf("ipam: %s holds allocations in subnet %s, not %s", a.path, st.Subnet, a.subnet)
	}
	st.Subnet = a.subnet.String()
	if err := fn(&st); err != nil {
		return err
	}
	out, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	return os.Rename(tmp, a.path)
}

// Allocate returns id's address, allocating the next free one after the
// last handed out (so a just-released address is not reused at once).
func (a *ipam) Allocate(id string) (netip.Addr, error) {
	var got netip.Addr
	err := a.update(func(st *ipamState) error {
		for ip, owner := range st.Allocs {
			if owner == id {
				got = netip.MustParseAddr(ip)
				return nil
			}
		}
		gw := gateway(a.subnet)
		start := gw
		if last, err := netip.ParseAddr(st.Last); err == nil && a.subnet.Contains(last) {
			start = last
		}
		first := gw.Next()
		n := 1 << min(a.subnet.Addr().BitLen()-a.subnet.Bits(), 20)
		ip := start
		for range n {
			ip = ip.Next()
			if !a.subnet.Contains(ip) || isBroadcast(a.subnet, ip) {
				ip = first
			}
			if _, used := st.Allocs[ip.String()]; !used && ip != gw && !isBroadcast(a.subnet, ip) {
				st.Allocs[ip.String()] = id
				st.Last = ip.String()
				got = ip
				return nil
			}
		}
		return fmt.Errorf("ipam: subnet %s: %w", a.subnet, ErrExhausted)
	})
	return got, err
}

func isBroadcast(p netip.Prefix, ip netip.Addr) bool {
	return ip.Next().IsValid() && !p.Contains(ip.Next())
}

// Release frees every address owned by id.
func (a *ipam) Release(id string) error {
	return a.update(func(st *ipamState) error {
		for ip, owner := range st.Allocs {
			if owner == id {
				delete(st.Allocs, ip)
			}
		}
		return nil
	})
}

// Owners returns the ids holding addresses.
func (a *ipam) Owners() (map[string]bool, error) {
	owners := map[string]bool{}
	err := a.update(func(st *ipamState) error {
		for _, id := range st.Allocs {
			owners[id] = true
		}
		return nil
	})
	return owners, err
}
