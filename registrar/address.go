package registrar

import (
	"fmt"

	"github.com/berthd/berth/runtime"
)

// NetworkLabel names, on a container, the network whose address it is
// recorded at.
const NetworkLabel = "berth.network"

// address is the IP a container is recorded at, chosen the same way on
// every host and at every run (the peers pick one of several networks at
// random: Traefik #979, docker-gen #169):
//  1. the network its label berth.network names;
//  2. else network (the registrar's Network, [daemon] network);
//  3. else the first of its networks, by name, that has an address.
//
// Of that network, the IPv4 address, else the IPv6 one. A container whose
// runtime reports no networks keeps the runtime's IP. A label naming a
// network the container is not on (or one without an address) is
// reported, and the rule goes on with 2.
func address(c runtime.Container, network string) (ip, warning string) {
	if len(c.Networks) == 0 {
		return c.IP, ""
	}
	of := func(name string) (string, bool) {
		for _, n := range c.Networks {
			if n.Name == name {
				if n.IP != "" {
					return n.IP, true
				}
				if n.IPv6 != "" {
					return n.IPv6, true
				}
			}
		}
		return "", false
	}
	if want := c.Labels[NetworkLabel]; want != "" {
		if ip, ok := of(want); ok {
			return ip, ""
		}
		warning = fmt.Sprintf("container %q (%.12s): label %s=%q names no network of it with an address; recorded at another", c.Name, c.ID, NetworkLabel, want)
	}
	if network != "" {
		if ip, ok := of(network); ok {
			return ip, warning
		}
	}
	first := ""
	for _, n := range c.Networks {
		if _, ok := of(n.Name); ok && (first == "" || n.Name < first) {
			first = n.Name
		}
	}
	ip, _ = of(first)
	return ip, warning
}
