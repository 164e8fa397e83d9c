package network

import "net/netip"

// Free counts the subnet's addresses not allocated now (the gateway and
// broadcast excluded): how many more containers the bridge can take. A
// deploy checks it before it starts anything.
func (m *Manager) Free() (int, error) {
	free := 0
	err := m.ipam.update(func(st *ipamState) error {
		p := m.subnet.Masked()
		n := 1 << min(p.Addr().BitLen()-p.Bits(), 20)
		used := 0
		for ip := range st.Allocs {
			if a, err := netip.ParseAddr(ip); err == nil && p.Contains(a) {
				used++
			}
		}
		free = max(n-3-used, 0) // network, gateway, broadcast
		return nil
	})
	return free, err
}
