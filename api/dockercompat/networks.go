package dockercompat

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/moby/moby/api/types/network"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
)

// networkID is the stable id berth gives a network (it has three: the
// bridge, host and none, with dockerd's names).
func networkID(name string) string { return stableID("berth-network", name) }

var networkFilters = []string{"dangling", "driver", "id", "label", "name", "scope", "type"}

// networks are berth's networks as dockerd describes its own.
func (s *Server) networks() []network.Network {
	subnet := s.rt.Network().Subnet()
	return []network.Network{
		{
			Name: runtime.NetworkBridge, ID: networkID(runtime.NetworkBridge), Created: s.started,
			Scope: "local", Driver: "bridge", EnableIPv4: true,
			IPAM: network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{{
				Subnet: subnet.Masked(), Gateway: subnet.Masked().Addr().Next(),
			}}},
			Options: map[string]string{"com.docker.network.bridge.name": s.rt.Network().Bridge()},
			Labels:  map[string]string{},
		},
		{
			Name: runtime.NetworkHost, ID: networkID(runtime.NetworkHost), Created: s.started,
			Scope: "local", Driver: "host", EnableIPv4: true,
			IPAM:    network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			Options: map[string]string{}, Labels: map[string]string{},
		},
		{
			Name: runtime.NetworkNone, ID: networkID(runtime.NetworkNone), Created: s.started,
			Scope: "local", Driver: "null",
			IPAM:    network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
			Options: map[string]string{}, Labels: map[string]string{},
		},
	}
}

func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"), networkFilters...)
	if err != nil {
		return err
	}
	out := []network.Summary{}
	for _, n := range s.networks() {
		if !f.any("name", func(v string) bool { return matchRegexp(v, n.Name) }) ||
			!f.any("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) ||
			!f.any("driver", func(v string) bool { return v == n.Driver }) ||
			!f.any("scope", func(v string) bool { return v == n.Scope }) ||
			!f.any("type", func(v string) bool { return v == "builtin" }) ||
			!f.any("dangling", func(v string) bool { return v == "false" || v == "0" }) ||
			!f.matchLabels("label", n.Labels) {
			continue
		}
		out = append(out, network.Summary{Network: n})
	}
	api.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request) error {
	ref := r.PathValue("id")
	var found *network.Network
	nets := s.networks()
	for i, n := range nets {
		if n.Name == ref || n.ID == ref || len(ref) >= 3 && strings.HasPrefix(n.ID, ref) {
			found = &nets[i]
			break
		}
	}
	if found == nil {
		return errorf(http.StatusNotFound, "network %s not found", ref)
	}
	cs, err := s.rt.List(r.Context())
	if err != nil {
		return err
	}
	in := network.Inspect{Network: *found, Containers: map[string]network.EndpointResource{}}
	for _, c := range cs {
		if c.State != runtime.StateRunning {
			continue
		}
		for _, n := range c.Networks {
			if n.Name != found.Name {
				continue
			}
			ep := endpoint(c, n)
			res := network.EndpointResource{Name: c.Name, EndpointID: ep.EndpointID, MacAddress: ep.MacAddress}
			if ep.IPAddress.IsValid() {
				res.IPv4Address = netip.PrefixFrom(ep.IPAddress, n.PrefixLen)
			}
			in.Containers[c.ID] = res
		}
	}
	api.WriteJSON(w, http.StatusOK, in)
	return nil
}
