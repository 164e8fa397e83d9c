package catalog

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/consul/api"
)

// The result types are consul-template's (package dependency), field for
// field, so that templates written for it read them unchanged.

// ServiceTags are a service's tags, sorted.
type ServiceTags []string

// HealthService is one instance of a service, as service returns it.
type HealthService struct {
	Node                   string
	NodeID                 string
	NodeAddress            string
	NodeTaggedAddresses    map[string]string
	NodeMeta               map[string]string
	ServiceMeta            map[string]string
	Address                string // the service's address, else its node's
	ServiceTaggedAddresses map[string]api.ServiceAddress
	ID                     string
	Name                   string
	Tags                   ServiceTags
	Checks                 api.HealthChecks
	Status                 string // the checks' aggregated status
	Port                   int
	Weights                api.AgentWeights
}

// CatalogSnippet is one service of services.
type CatalogSnippet struct {
	Name string
	Tags ServiceTags
}

// CatalogNode is a node and its services, as node returns it.
type CatalogNode struct {
	Node     *NodeInfo
	Services []*CatalogNodeService
}

// CatalogNodeService is a service on a single node.
type CatalogNodeService struct {
	ID                string
	Service           string
	Tags              ServiceTags
	Meta              map[string]string
	Port              int
	Address           string
	EnableTagOverride bool
}

// NodeInfo is a node, as nodes returns them (consul-template's
// dependency.Node).
type NodeInfo struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
}

// empty is what a query of kind returns before its first answer: an empty
// result of the function's type, as consul-template's.
func empty(kind Kind) any {
	switch kind {
	case Service:
		return []*HealthService{}
	case Services:
		return []*CatalogSnippet{}
	case Node:
		return (*CatalogNode)(nil)
	default:
		return []*NodeInfo{}
	}
}

func sortedTags(tags []string) ServiceTags {
	out := append(make([]string, 0, len(tags)), tags...)
	slices.Sort(out)
	return out
}

// meta is what one answer says about the query itself.
type meta struct {
	index       uint64
	lastContact int64 // nanoseconds
	filtered    bool  // Consul left results out: the token may not read them
}

// fetch runs one (blocking) query and returns its result in
// consul-template's form and order.
func fetch(ctx context.Context, c *api.Client, q Query, opts *api.QueryOptions) (any, meta, error) {
	opts.Datacenter, opts.Near, opts.Namespace, opts.Partition = q.DC, q.Near, q.Namespace, q.Partition
	opts = opts.WithContext(ctx)
	var (
		qm  *api.QueryMeta
		out any
		err error
	)
	switch q.Kind {
	case Service:
		opts.Peer = q.Peer
		var entries []*api.ServiceEntry
		entries, qm, err = c.Health().Service(q.Name, q.Tag, q.passingOnly(), opts)
		if err == nil {
			out = healthServices(q, entries)
		}
	case Services:
		var m map[string][]string
		m, qm, err = c.Catalog().Services(opts)
		if err == nil {
			list := make([]*CatalogSnippet, 0, len(m))
			for name, tags := range m {
				list = append(list, &CatalogSnippet{Name: name, Tags: sortedTags(tags)})
			}
			slices.SortStableFunc(list, func(a, b *CatalogSnippet) int { return cmp.Compare(a.Name, b.Name) })
			out = list
		}
	case Node:
		name := q.Name
		if name == "" {
			if name, err = c.Agent().NodeName(); err != nil {
				return nil, meta{}, fmt.Errorf("%s: the local agent's node name: %w", q, err)
			}
		}
		var n *api.CatalogNode
		n, qm, err = c.Catalog().Node(name, opts)
		if err == nil {
			out = catalogNode(n)
		}
	case Nodes:
		var ns []*api.Node
		ns, qm, err = c.Catalog().Nodes(opts)
		if err == nil {
			list := make([]*NodeInfo, 0, len(ns))
			for _, n := range ns {
				list = append(list, nodeInfo(n))
			}
			if q.Near == "" {
				slices.SortStableFunc(list, func(a, b *NodeInfo) int {
					return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Address, b.Address))
				})
			}
			out = list
		}
	}
	if err != nil {
		return nil, meta{}, fmt.Errorf("%s: %w", q, err)
	}
	return out, meta{index: qm.LastIndex, lastContact: int64(qm.LastContact), filtered: qm.ResultsFilteredByACLs}, nil
}

// permissions names the ACL rights q needs, for the message of an answer
// Consul filtered.
func (q Query) permissions() string {
	switch q.Kind {
	case Service:
		return fmt.Sprintf("service:read on %q and node:read on its nodes", q.Name)
	case Services:
		return "service:read"
	default:
		return "node:read"
	}
}

func healthServices(q Query, entries []*api.ServiceEntry) []*HealthService {
	list := make([]*HealthService, 0, len(entries))
	for _, e := range entries {
		status := e.Checks.AggregatedStatus()
		if !q.accepts(status) {
			continue
		}
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		list = append(list, &HealthService{
			Node:                   e.Node.Node,
			NodeID:                 e.Node.ID,
			NodeAddress:            e.Node.Address,
			NodeTaggedAddresses:    e.Node.TaggedAddresses,
			NodeMeta:               e.Node.Meta,
			ServiceMeta:            e.Service.Meta,
			Address:                addr,
			ServiceTaggedAddresses: e.Service.TaggedAddresses,
			ID:                     e.Service.ID,
			Name:                   e.Service.Service,
			Tags:                   sortedTags(e.Service.Tags),
			Status:                 status,
			Checks:                 e.Checks,
			Port:                   e.Service.Port,
			Weights:                e.Service.Weights,
		})
	}
	if q.Near == "" {
		slices.SortStableFunc(list, func(a, b *HealthService) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
		})
	}
	return list
}

func catalogNode(n *api.CatalogNode) *CatalogNode {
	if n == nil {
		return &CatalogNode{}
	}
	services := make([]*CatalogNodeService, 0, len(n.Services))
	for _, s := range n.Services {
		services = append(services, &CatalogNodeService{
			ID: s.ID, Service: s.Service, Tags: sortedTags(s.Tags), Meta: s.Meta,
			Port: s.Port, Address: s.Address, EnableTagOverride: s.EnableTagOverride,
		})
	}
	slices.SortStableFunc(services, func(a, b *CatalogNodeService) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ID, b.ID))
	})
	return &CatalogNode{Node: nodeInfo(n.Node), Services: services}
}

func nodeInfo(n *api.Node) *NodeInfo {
	if n == nil {
		return nil
	}
	return &NodeInfo{ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter, TaggedAddresses: n.TaggedAddresses, Meta: n.Meta}
}
