package catalog

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Kind is the kind of a catalog query, named as the template function.
type Kind string

// The template functions, and the queries they make.
const (
	Service  Kind = "service"  // GET /v1/health/service/NAME
	Services Kind = "services" // GET /v1/catalog/services
	Node     Kind = "node"     // GET /v1/catalog/node/NAME
	Nodes    Kind = "nodes"    // GET /v1/catalog/nodes
)

// Health filters of service, as consul-template has them.
const (
	HealthAny      = "any"
	HealthPassing  = "passing"
	HealthWarning  = "warning"
	HealthCritical = "critical"
	HealthMaint    = "maintenance"
)

// consul-template's argument grammar (dependency/dependency.go).
const (
	dcRe          = `(@(?P<dc>[[:word:]\.\-\_]+))?`
	filterRe      = `(\|(?P<filter>[[:word:]\,]+))?`
	serviceNameRe = `(?P<name>[[:word:]\-\_]+)`
	queryRe       = `(\?(?P<query>[[:word:]\-\_\=\&]+))?`
	nodeNameRe    = `(?P<name>[[:word:]\.\-\_]+)`
	nearRe        = `(~(?P<near>[[:word:]\.\-\_]+))?`
	tagRe         = `((?P<tag>[[:word:]=:\.\-\_]+)\.)?`
)

var (
	serviceRe  = regexp.MustCompile(`\A` + tagRe + serviceNameRe + queryRe + dcRe + nearRe + filterRe + `\z`)
	servicesRe = regexp.MustCompile(`\A` + queryRe + dcRe + `\z`)
	nodeRe     = regexp.MustCompile(`\A` + nodeNameRe + queryRe + dcRe + `\z`)
	nodesRe    = regexp.MustCompile(`\A` + queryRe + dcRe + nearRe + `\z`)
)

// Query is one catalog dependency: what one blocking query asks. Two
// templates asking the same thing have equal queries (and Strings), and
// share one blocking query.
type Query struct {
	Kind      Kind
	Name      string   // service or node name ("" for node: the local agent's)
	Tag       string   // service: only instances with this tag
	DC        string   // datacenter ("" for the agent's)
	Near      string   // sort by round-trip time from this node instead of by name
	Filters   []string // service: health states accepted, sorted (default passing)
	Namespace string   // Consul Enterprise namespace (?ns=)
	Partition string   // Consul Enterprise admin partition (?partition=)
	Peer      string   // service: cluster peer (?peer=)
}

// Parse parses the arguments of template function kind as consul-template
// does: service's arguments are joined with "|" (so that service "web"
// "any" is service "web|any"), the others' are concatenated.
func Parse(kind Kind, args ...string) (Query, error) {
	q := Query{Kind: kind}
	var re *regexp.Regexp
	s := strings.Join(args, "")
	switch kind {
	case Service:
		re, s = serviceRe, strings.Join(args, "|")
	case Services:
		re = servicesRe
	case Node:
		re = nodeRe
		if s == "" {
			return q, nil // the local agent's node
		}
	case Nodes:
		re = nodesRe
	default:
		return q, fmt.Errorf("unknown catalog query %q", kind)
	}
	if !re.MatchString(s) {
		return q, fmt.Errorf("%s: invalid format: %q", kind.label(), s)
	}
	m := match(re, s)
	q.Name, q.Tag, q.DC, q.Near = m["name"], m["tag"], m["dc"], m["near"]
	if raw := m["query"]; raw != "" {
		params, err := url.ParseQuery(raw)
		if err != nil {
			return q, fmt.Errorf("%s: invalid query: %q: %w", kind.label(), raw, err)
		}
		for key := range params {
			switch key {
			case "ns", "partition", "peer":
			default:
				return q, fmt.Errorf("%s: invalid query parameter key %q in query %q: supported keys: ns,peer,partition", kind.label(), key, raw)
			}
		}
		q.Namespace, q.Partition, q.Peer = params.Get("ns"), params.Get("partition"), params.Get("peer")
	}
	if kind != Service {
		return q, nil
	}
	filter := m["filter"]
	if filter == "" {
		q.Filters = []string{HealthPassing}
		return q, nil
	}
	for f := range strings.SplitSeq(filter, ",") {
		switch f = strings.TrimSpace(f); f {
		case HealthAny, HealthPassing, HealthWarning, HealthCritical, HealthMaint:
			q.Filters = append(q.Filters, f)
		case "":
		default:
			return q, fmt.Errorf("%s: invalid filter: %q in %q", kind.label(), f, s)
		}
	}
	slices.Sort(q.Filters)
	return q, nil
}

// label is the query's name in consul-template's messages.
func (k Kind) label() string {
	if k == Service {
		return "health.service"
	}
	return "catalog." + string(k)
}

func match(re *regexp.Regexp, s string) map[string]string {
	m := map[string]string{}
	sub := re.FindStringSubmatch(s)
	for i, name := range re.SubexpNames() {
		if name != "" && i < len(sub) {
			m[name] = sub[i]
		}
	}
	return m
}

// String is the query's canonical form, consul-template's: it names the
// query in logs and is the key templates share it by.
func (q Query) String() string {
	name := q.Name
	if q.Tag != "" {
		name = q.Tag + "." + name
	}
	if q.DC != "" {
		name += "@" + q.DC
	}
	if q.Partition != "" {
		name += "@partition=" + q.Partition
	}
	if q.Namespace != "" {
		name += "@ns=" + q.Namespace
	}
	if q.Peer != "" {
		name += "@peer=" + q.Peer
	}
	if q.Near != "" {
		name += "~" + q.Near
	}
	if len(q.Filters) > 0 {
		name += "|" + strings.Join(q.Filters, ",")
	}
	if name == "" {
		return q.Kind.label()
	}
	return q.Kind.label() + "(" + name + ")"
}

// passingOnly reports whether the query asks Consul for passing instances
// only (the filter is applied by Consul, not here).
func (q Query) passingOnly() bool {
	return len(q.Filters) == 1 && q.Filters[0] == HealthPassing
}

// accepts reports whether an instance of aggregated status s passes the
// query's filters.
func (q Query) accepts(s string) bool {
	for _, f := range q.Filters {
		if f == s || f == HealthAny {
			return true
		}
	}
	return false
}
