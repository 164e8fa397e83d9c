package dialect

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/berthd/berth/store"
)

// Incremental rendering. At parse time, the body of every outermost range
// whose output can only depend on its iteration (the range's element and
// variables) and on the store reads it makes is wrapped so that
//
//	{{range $name := lsdir "/services"}}BODY{{end}}
//
// executes as
//
//	{{range $name := lsdir "/services"}}{{if memoBegin N $name nil}}BODY{{memoEnd N}}{{end}}{{end}}
//
// memoBegin looks up the output an earlier execution produced for the same
// block and the same iteration values; when every store read that output
// came from (a key, the keys under a prefix, a directory listing) reads the
// same in this snapshot, it writes the cached bytes and skips BODY.
// Otherwise BODY runs, its store reads are recorded, and memoEnd keeps the
// bytes it wrote. The output is byte for byte a full render's.
//
// A body qualifies when it refers to no variable declared outside it
// (not $ either: the root data is not tracked), has no break or continue,
// and calls (itself or through {{template}}) no function whose result is
// not a function of its arguments and the snapshot: env, warn, the
// nondeterministic ones (see impure). An iteration whose values are not
// plain comparable values (strings, numbers, kv pairs, ...; a record's list
// of instances is not) runs BODY without caching.

// impure are the functions whose result or effect is not a function of
// their arguments and the snapshot; a body that calls one is not memoized.
var impure = []string{
	"env", "expandenv", "getenv", "warn", "call",
	"datetime", "lookupIP", "lookupIPV4", "lookupIPV6", "lookupSRV", "fileExists",
	// endpoints hands the set it builds to the live sink and warns: an
	// effect a cached body would skip.
	"endpoints",
	// httpsHosts warns about the values it leaves out.
	"httpsHosts",
	// The Consul catalog is read outside the snapshot (catalog.go).
	"service", "services", "node", "nodes",
}

// Names of the two functions the rewrite inserts; a template cannot call
// them (they are not in the parse-time function map).
const (
	memoBeginFunc = "memoBegin"
	memoEndFunc   = "memoEnd"
)

// memoizeRanges rewrites the qualifying range bodies of every template in
// root's set and returns how many it wrapped.
func memoizeRanges(root *template.Template, nondeterministic []string) (int, error) {
	c := &rewriter{root: root, bad: map[string]bool{}}
	for _, f := range impure {
		c.bad[f] = true
	}
	for _, f := range nondeterministic {
		c.bad[f] = true
	}
	for _, t := range root.Templates() {
		if t.Tree == nil || t.Tree.Root == nil {
			continue
		}
		if err := c.rewriteList(t.Tree.Root); err != nil {
			return 0, err
		}
	}
	return c.blocks, nil
}

type rewriter struct {
	root *template.Template
	bad  map[string]bool
	// impureTmpl is the set of impure templates, computed on first use.
	impureTmpl map[string]bool
	blocks     int
}

// rewriteList wraps the qualifying ranges in list, recursing into what
// does not qualify.
func (c *rewriter) rewriteList(list *parse.ListNode) error {
	if list == nil {
		return nil
	}
	for _, n := range list.Nodes {
		var err error
		switch n := n.(type) {
		case *parse.RangeNode:
			if c.qualifies(n) {
				err = c.wrap(n)
			} else if err = c.rewriteList(n.List); err == nil {
				err = c.rewriteList(n.ElseList)
			}
		case *parse.IfNode:
			if err = c.rewriteList(n.List); err == nil {
				err = c.rewriteList(n.ElseList)
			}
		case *parse.WithNode:
			if err = c.rewriteList(n.List); err == nil {
				err = c.rewriteList(n.ElseList)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// qualifies reports whether r's body may be memoized.
func (c *rewriter) qualifies(r *parse.RangeNode) bool {
	if r.Pipe == nil || r.List == nil || len(r.List.Nodes) == 0 {
		return false
	}
	scope := map[string]bool{}
	for _, v := range r.Pipe.Decl {
		scope[v.Ident[0]] = true
	}
	return c.pureList(r.List, scope)
}

// pureList checks the nodes of a list in order: variables declared by an
// action are in scope for the nodes after it (and below them), until the
// list ends.
func (c *rewriter) pureList(list *parse.ListNode, outer map[string]bool) bool {
	if list == nil {
		return true
	}
	scope := outer
	copied := false
	for _, n := range list.Nodes {
		switch n := n.(type) {
		case *parse.TextNode, *parse.CommentNode:
		case *parse.ActionNode:
			if !c.purePipe(n.Pipe, scope) {
				return false
			}
			if len(n.Pipe.Decl) > 0 && !n.Pipe.IsAssign {
				if !copied {
					scope, copied = cloneScope(scope), true
				}
				for _, v := range n.Pipe.Decl {
					scope[v.Ident[0]] = true
				}
			}
		case *parse.IfNode:
			if !c.pureBranch(&n.BranchNode, scope) {
				return false
			}
		case *parse.RangeNode:
			if !c.pureBranch(&n.BranchNode, scope) {
				return false
			}
		case *parse.WithNode:
			if !c.pureBranch(&n.BranchNode, scope) {
				return false
			}
		case *parse.TemplateNode:
			if n.Pipe != nil && !c.purePipe(n.Pipe, scope) {
				return false
			}
			if !c.calledPure(n.Name) {
				return false
			}
		default: // break, continue, anything new
			return false
		}
	}
	return true
}

// pureBranch checks an if, with or range: its pipeline's declarations are
// in scope in both of its lists.
func (c *rewriter) pureBranch(b *parse.BranchNode, scope map[string]bool) bool {
	if !c.purePipe(b.Pipe, scope) {
		return false
	}
	inner := scope
	if len(b.Pipe.Decl) > 0 && !b.Pipe.IsAssign {
		inner = cloneScope(scope)
		for _, v := range b.Pipe.Decl {
			inner[v.Ident[0]] = true
		}
	}
	return c.pureList(b.List, inner) && c.pureList(b.ElseList, inner)
}

// purePipe checks a pipeline: it refers only to variables in scope (an
// assignment's target too) and calls no impure function.
func (c *rewriter) purePipe(p *parse.PipeNode, scope map[string]bool) bool {
	if p == nil {
		return true
	}
	if p.IsAssign {
		for _, v := range p.Decl {
			if !scope[v.Ident[0]] {
				return false
			}
		}
	}
	for _, cmd := range p.Cmds {
		for _, a := range cmd.Args {
			if !c.pureArg(a, scope) {
				return false
			}
		}
	}
	return true
}

func (c *rewriter) pureArg(n parse.Node, scope map[string]bool) bool {
	switch n := n.(type) {
	case *parse.VariableNode:
		return scope[n.Ident[0]]
	case *parse.IdentifierNode:
		return !c.bad[n.Ident]
	case *parse.PipeNode:
		return c.purePipe(n, scope)
	case *parse.ChainNode:
		return c.pureArg(n.Node, scope)
	}
	return true // dot, fields of dot, literals, nil
}

// calledPure reports whether the named template calls no impure function,
// itself or through the templates it calls. Its variables are its own.
func (c *rewriter) calledPure(name string) bool {
	if c.impureTmpl == nil {
		c.impureTmpl = c.impureTemplates()
	}
	t := c.root.Lookup(name)
	return t != nil && t.Tree != nil && !c.impureTmpl[name]
}

// impureTemplates returns the set of templates that call an impure
// function themselves or through any chain of {{template}} calls, or
// call a template that does not exist. It is a fixpoint over the whole
// call graph, so mutual recursion is judged by every body in the cycle
// (a provisional "pure" for a template still being checked would leak
// into its callers' verdicts).
func (c *rewriter) impureTemplates() map[string]bool {
	bad := map[string]bool{}
	callees := map[string][]string{}
	for _, t := range c.root.Templates() {
		name := t.Name()
		if t.Tree == nil || t.Tree.Root == nil {
			bad[name] = true
			continue
		}
		walk(t.Tree.Root, func(n parse.Node) bool {
			switch n := n.(type) {
			case *parse.IdentifierNode:
				if c.bad[n.Ident] {
					bad[name] = true
				}
			case *parse.TemplateNode:
				if c.root.Lookup(n.Name) == nil {
					bad[name] = true
				}
				callees[name] = append(callees[name], n.Name)
			}
			return true
		})
	}
	for changed := true; changed; {
		changed = false
		for name, cs := range callees {
			if bad[name] {
				continue
			}
			for _, callee := range cs {
				if bad[callee] {
					bad[name], changed = true, true
					break
				}
			}
		}
	}
	return bad
}

func cloneScope(s map[string]bool) map[string]bool {
	out := make(map[string]bool, len(s)+2)
	for k := range s {
		out[k] = true
	}
	return out
}

// wrap replaces r's body with the memoized form: the nodes of
// {{if memoBegin N args}}BODY{{memoEnd N}}{{end}}, parsed from text so
// that they are well formed, with BODY grafted in.
func (c *rewriter) wrap(r *parse.RangeNode) error {
	id := c.blocks
	c.blocks++
	var decl []string
	for _, v := range r.Pipe.Decl {
		decl = append(decl, v.Ident[0])
	}
	head, args := "{{range .}}", []string{".", "nil"}
	if len(decl) > 0 {
		head = "{{range " + strings.Join(decl, ", ") + " := .}}"
		args = append(slices.Clone(decl), "nil")[:2]
	}
	text := fmt.Sprintf("%s{{if %s %d %s}}{{%s %d}}{{end}}{{end}}", head, memoBeginFunc, id, strings.Join(args, " "), memoEndFunc, id)
	trees, err := parse.Parse("memo", text, "{{", "}}", map[string]any{memoBeginFunc: true, memoEndFunc: true})
	if err != nil {
		return fmt.Errorf("memoize range: %w", err)
	}
	snippet := trees["memo"].Root.Nodes[0].(*parse.RangeNode)
	ifNode := snippet.List.Nodes[0].(*parse.IfNode)
	end := ifNode.List.Nodes[0]
	ifNode.List.Nodes = append(append([]parse.Node{}, r.List.Nodes...), end)
	r.List = &parse.ListNode{NodeType: parse.NodeList, Pos: r.List.Pos, Nodes: []parse.Node{ifNode}}
	return nil
}

// --- execution ---

// blockKey names one iteration of a memoized block.
type blockKey struct {
	id     int
	a0, a1 any
}

// block is what an execution of a block produced: its bytes and the store
// reads they came from.
type block struct {
	out  []byte
	deps []dep
	gen  uint64
}

// dep is one store read: a key (kvs holds it, or nothing when absent),
// the keys under a prefix, or a directory listing (names).
type dep struct {
	kind  byte // 'k' key, 'u' under a prefix, 'd' lsdir, 'l' ls
	arg   string
	kvs   []store.KV
	names []string
	at    int // 'u': where the keys began in the snapshot read (a hint)
}

// frame is a block being executed.
type frame struct {
	key     blockKey
	cache   bool // false: run and record reads for the enclosing block only
	start   int  // output offset where the block began
	deps    []dep
	blockID int
}

// memoFuncs returns memoBegin and memoEnd bound to x.
func memoFuncs(x *execution) template.FuncMap {
	return template.FuncMap{
		memoBeginFunc: x.memoBegin,
		memoEndFunc:   x.memoEnd,
	}
}

// memoBegin reports whether the block must run: false when it wrote the
// cached output of the same iteration (named by a0, a1: the range's
// variables, or dot), still valid for this snapshot.
func (x *execution) memoBegin(id int, a0, a1 any) bool {
	key, cache := blockKey{id: id, a0: a0, a1: a1}, x.memo != nil && plainValue(a0) && plainValue(a1)
	if cache {
		if b, ok := x.memo.blocks[key]; ok && x.kv.valid(b.deps, x.kv.delta && b.gen == x.kv.since) {
			x.out.Write(b.out)
			if b.gen != x.memo.gen {
				b.gen = x.memo.gen
				x.memo.usedBlocks++
			}
			x.addDeps(b.deps)
			return false
		}
	}
	f := &frame{blockID: id, start: x.out.Len(), key: key, cache: cache}
	x.frames = append(x.frames, f)
	x.kv.rec = &f.deps
	return true
}

// memoEnd closes the block memoBegin opened: its output is kept (when it
// may be) and its reads count for the enclosing block.
func (x *execution) memoEnd(id int) (string, error) {
	if len(x.frames) == 0 || x.frames[len(x.frames)-1].blockID != id {
		return "", fmt.Errorf("memoized block %d ended out of turn", id)
	}
	f := x.frames[len(x.frames)-1]
	x.frames = x.frames[:len(x.frames)-1]
	x.kv.rec = nil
	if len(x.frames) > 0 {
		x.kv.rec = &x.frames[len(x.frames)-1].deps
	}
	if f.cache {
		x.memo.blocks[f.key] = &block{out: bytes.Clone(x.out.Bytes()[f.start:]), deps: f.deps, gen: x.memo.gen}
		x.memo.usedBlocks++
	}
	x.addDeps(f.deps)
	return "", nil
}

// addDeps counts reads for the enclosing block, if any.
func (x *execution) addDeps(deps []dep) {
	if x.kv.rec != nil {
		*x.kv.rec = append(*x.kv.rec, deps...)
	}
}

// plainValue reports whether v can name an iteration: a value compared by
// content, with nothing it points to that could change between
// executions.
func plainValue(v any) bool {
	if v == nil {
		return true
	}
	return plainType(reflect.TypeOf(v))
}

func plainType(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128, reflect.String:
		return true
	case reflect.Array:
		return plainType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !plainType(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false
}

// --- reads ---

// record notes a read for the block being executed, if any.
func (s *kvStore) record(d dep) {
	if s.rec != nil {
		*s.rec = append(*s.rec, d)
	}
}

// maxChanged is how many changed keys changedKeys lists at most; beyond
// it, blocks are checked by reading their deps again.
const maxChanged = 4096

// changedKeys returns the keys (sorted) whose state differs between the
// sorted snapshots prev and cur: added, removed, or with another value or
// revision; ok is false when there are more than maxChanged. The
// snapshots of one mirror share their unchanged keys' strings and values,
// which compare at once.
func changedKeys(prev, cur []store.KV) (changed []string, ok bool) {
	i, j := 0, 0
	for i < len(prev) || j < len(cur) {
		if len(changed) > maxChanged {
			return nil, false
		}
		switch {
		case i == len(prev):
			changed = append(changed, cur[j].Key)
			j++
		case j == len(cur):
			changed = append(changed, prev[i].Key)
			i++
		case prev[i].Key == cur[j].Key:
			if !sameKV(prev[i], cur[j]) {
				changed = append(changed, cur[j].Key)
			}
			i++
			j++
		case prev[i].Key < cur[j].Key:
			changed = append(changed, prev[i].Key)
			i++
		default:
			changed = append(changed, cur[j].Key)
			j++
		}
	}
	return changed, true
}

// touched reports whether a changed key starts with prefix (exact: is
// prefix).
func (s *kvStore) touched(prefix string, exact bool) bool {
	i, found := slices.BinarySearch(s.changed, prefix)
	if exact || found {
		return found
	}
	return i < len(s.changed) && strings.HasPrefix(s.changed[i], prefix)
}

// valid reports whether every read in deps reads the same in s. With
// sinceSeen, deps are known to read the same in the snapshot of the
// memo's last execution, so a key or prefix read is checked against the
// keys changed since (s.changed) alone.
func (s *kvStore) valid(deps []dep, sinceSeen bool) bool {
	for _, d := range deps {
		if sinceSeen && (d.kind == 'k' || d.kind == 'u') {
			if s.touched(d.arg, d.kind == 'k') {
				return false
			}
			continue
		}
		switch d.kind {
		case 'k':
			i, ok := s.find(d.arg)
			if ok != (len(d.kvs) == 1) || ok && !sameKV(s.kvs[i], d.kvs[0]) {
				return false
			}
		case 'u':
			cur := s.spanAt(d.arg, d.at)
			if len(cur) != len(d.kvs) {
				return false
			}
			for i := range cur {
				if !sameKV(cur[i], d.kvs[i]) {
					return false
				}
			}
		case 'd', 'l':
			var names []string
			var ok bool
			if d.kind == 'd' {
				names, ok = s.index().lsdir(d.arg)
			} else {
				names, ok = s.index().children(d.arg)
			}
			if !ok || len(names) != len(d.names) {
				return false
			}
			for i := range names {
				if names[i] != d.names[i] {
					return false
				}
			}
		default:
			return false
		}
	}
	return true
}

func sameKV(a, b store.KV) bool {
	return a.Key == b.Key && a.ModRevision == b.ModRevision && bytes.Equal(a.Value, b.Value)
}
