package dialect

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

// Error is a template error at a place in a file. Line and Col are 1-based;
// Col is a byte column, and 0 when unknown.
type Error struct {
	File string
	Line int
	Col  int
	Msg  string
	Err  error // the underlying error, if any
}

func (e *Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

var (
	// "template: name:12: message" (parse errors)
	parseErrRE = regexp.MustCompile(`^template: (.*?):(\d+): (.*)$`)
	// "template: name:12:4: executing ..." (execution errors)
	execErrRE = regexp.MustCompile(`^template: (.*?):(\d+):(\d+): (.*)$`)
	// `function "foo" not defined`
	undefinedFuncRE = regexp.MustCompile(`function "([^"]+)" not defined`)
)

// parseError turns a text/template parse error of file path (template
// name) into an *Error with a line and, where it can be found, a column.
func parseError(path, name, text string, err error, fs *funcSet) error {
	msg := err.Error()
	m := parseErrRE.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: path, Msg: msg, Err: err}
	}
	line, _ := strconv.Atoi(m[2])
	e := &Error{File: path, Line: line, Msg: m[3], Err: err}
	if f := undefinedFuncRE.FindStringSubmatch(m[3]); f != nil {
		e.Msg = fs.unknown(f[1])
		if l, c, ok := findIdentifier(name, text, f[1]); ok {
			e.Line, e.Col = l, c
		}
		return e
	}
	e.Col = syntaxColumn(text, line, m[3])
	return e
}

// findIdentifier finds the first use of function fn in text, parsing it
// again without the function check.
func findIdentifier(name, text, fn string) (line, col int, ok bool) {
	tree := parse.New(name)
	tree.Mode = parse.SkipFuncCheck
	treeSet := map[string]*parse.Tree{}
	if _, err := tree.Parse(text, "", "", treeSet); err != nil {
		return 0, 0, false
	}
	for _, t := range treeSet {
		var found parse.Node
		walk(t.Root, func(n parse.Node) bool {
			if id, isID := n.(*parse.IdentifierNode); isID && id.Ident == fn {
				if found == nil || id.Position() < found.Position() {
					found = id
				}
			}
			return true
		})
		if found != nil {
			loc, _ := t.ErrorContext(found)
			if l, c, okLoc := splitLocation(loc); okLoc {
				// Take the earliest use across the defined templates.
				if !ok || l < line || (l == line && c < col) {
					line, col, ok = l, c, true
				}
			}
		}
	}
	return line, col, ok
}

// splitLocation parses "name:line:col" as ErrorContext writes it (0-based
// col) into a 1-based line and column.
func splitLocation(loc string) (line, col int, ok bool) {
	i := strings.LastIndexByte(loc, ':')
	if i < 0 {
		return 0, 0, false
	}
	j := strings.LastIndexByte(loc[:i], ':')
	if j < 0 {
		return 0, 0, false
	}
	l, err1 := strconv.Atoi(loc[j+1 : i])
	c, err2 := strconv.Atoi(loc[i+1:])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return l, c + 1, true
}

// walk calls f for n and every node below it, depth first, until f
// returns false.
func walk(n parse.Node, f func(parse.Node) bool) {
	if n == nil || !f(n) {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, f)
		}
	case *parse.ActionNode:
		walk(n.Pipe, f)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, d := range n.Decl {
			walk(d, f)
		}
		for _, c := range n.Cmds {
			walk(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(a, f)
		}
	case *parse.ChainNode:
		walk(n.Node, f)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		walk(n.Pipe, f)
	}
}

func walkBranch(b *parse.BranchNode, f func(parse.Node) bool) {
	walk(b.Pipe, f)
	walk(b.List, f)
	if b.ElseList != nil {
		walk(b.ElseList, f)
	}
}

// unexpectedRE finds the token a syntax error complains about:
// unexpected "}", unexpected <.X>, unexpected {{end}}, unexpected right
// paren.
var unexpectedRE = regexp.MustCompile(`unexpected (?:"([^"]+)"|<([^>]+)>|\{\{(\w+)\}\}|(right paren))`)

// syntaxColumn guesses the column of a syntax error, which the parser
// reports by line only: the token it complains about, the last action on
// the line for an unclosed one, else the first action on the line.
func syntaxColumn(text string, line int, msg string) int {
	lines := strings.SplitN(text, "\n", line+1)
	if line < 1 || line > len(lines) {
		return 0
	}
	l := lines[line-1]
	first := strings.Index(l, "{{")
	if strings.Contains(msg, "unclosed action") {
		if i := strings.LastIndex(l, "{{"); i >= 0 {
			return i + 1
		}
	}
	if m := unexpectedRE.FindStringSubmatch(msg); m != nil && first >= 0 {
		tok := m[1] + m[2] + m[3]
		if m[4] != "" {
			tok = ")"
		}
		if i := strings.Index(l[first+2:], tok); i >= 0 {
			return first + 2 + i + 1
		}
	}
	if first >= 0 {
		return first + 1
	}
	return 1
}

// execError turns a text/template execution error into an *Error naming
// the file, line and column where it happened.
func (t *Template) execError(err error) error {
	var ee template.ExecError
	msg := err.Error()
	if errors.As(err, &ee) {
		msg = ee.Err.Error()
	}
	m := execErrRE.FindStringSubmatch(msg)
	if m == nil {
		return &Error{File: t.paths[t.main], Msg: strings.TrimPrefix(msg, "template: "), Err: err}
	}
	file := t.paths[m[1]]
	if file == "" {
		file = m[1]
	}
	line, _ := strconv.Atoi(m[2])
	col, _ := strconv.Atoi(m[3])
	return &Error{File: file, Line: line, Col: col + 1, Msg: m[4], Err: err}
}
