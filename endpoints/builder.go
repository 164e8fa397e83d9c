package endpoints

import (
	"sync"

	"github.com/berthd/berth/records"
)

// Builder is Build with a memo: it keeps each instance's validated share
// of the set (its server and the upstreams it joins, or why it is left
// out), keyed by the instance fields Build reads, so that the set of a
// snapshot one change away from the last costs the grouping of its
// instances, not their validation again. Builder.Build returns exactly
// what Build returns for the same instances and options. Entries the last
// Build did not use are dropped once they outnumber the used ones, so the
// memo stays in proportion to the instances. Safe for concurrent use
// (builds are serialised); the zero Builder is ready.
type Builder struct {
	mu   sync.Mutex
	memo map[partKey]*memoPart
	gen  uint64
	used int
}

// partKey is every field of an instance that Build reads.
type partKey struct {
	ID, Name, IP       string
	Port, Weight       int
	State              records.State
	Hosts, Path, Proto string
}

type memoPart struct {
	p   *part
	gen uint64 // the last Build that used it
}

func keyOf(in records.Instance) partKey {
	return partKey{ID: in.ID, Name: in.Name, IP: in.IP, Port: in.Port, Weight: in.Weight, State: in.State,
		Hosts: in.Env["VIRTUAL_HOST"], Path: in.Env["VIRTUAL_PATH"], Proto: in.Env["VIRTUAL_PROTO"]}
}

// Build is Build(instances, opts...), through b's memo.
func (b *Builder) Build(instances []records.Instance, opts ...Option) (Set, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.memo == nil {
		b.memo = map[partKey]*memoPart{}
	}
	b.gen++
	b.used = 0
	set, errs := build(instances, func(in records.Instance) *part {
		k := keyOf(in)
		e, ok := b.memo[k]
		if !ok {
			e = &memoPart{p: partOf(in)}
			b.memo[k] = e
		}
		if e.gen != b.gen {
			e.gen = b.gen
			b.used++
		}
		return e.p
	}, opts)
	if len(b.memo) > 2*b.used+16 {
		for k, e := range b.memo {
			if e.gen != b.gen {
				delete(b.memo, k)
			}
		}
	}
	return set, errs
}
