package realparts

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago. They are taken below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where a listener on port 0 or an
// outgoing connection never lands: a port handed out here and closed
// cannot be given to the next "127.0.0.1:0" listener before the part that
// asked for it binds it (a backend once took a test nginx's port so).
func FreePorts(n int) ([]int, error) {
	lo, hi := portRange()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free loopback port in %d-%d", lo, hi)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo+1)))
		if err != nil {
			continue // in use
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portRange is the ports FreePorts takes from: 10000 up to the start of
// the ephemeral range, or 10000-29999 when that cannot be read or leaves
// too few.
func portRange() (lo, hi int) {
	lo, hi = 10000, 29999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err != nil || first-1-lo < 5000 {
		return lo, hi
	}
	return lo, first - 1
}
