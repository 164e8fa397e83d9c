package dialect

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/berthd/berth/store"
)

// answers is a Catalog over fixed answers: the contract's in-memory
// side, for what the template engine does with it (package catalog
// tests the real one against Consul).
type answers struct {
	data  map[string][]string // "fn args" → result; missing: pending
	calls []string
	done  int
}

func (a *answers) Lookup(fn string, args []string) (any, bool, error) {
	k := strings.TrimSpace(fn + " " + strings.Join(args, " "))
	a.calls = append(a.calls, k)
	if strings.Contains(k, "bad") {
		return nil, false, errors.New("health.service: invalid format")
	}
	d, ok := a.data[k]
	if !ok {
		return []string{}, false, nil
	}
	return d, true, nil
}

func (a *answers) Done() { a.done++ }

func (a *answers) Count() (int, bool) {
	n := 0
	for _, d := range a.data {
		n += len(d)
	}
	return n, a.done > 0
}

func TestCatalogFunctions(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		data       map[string][]string
		want       string // output, else
		err        string // error text
		pending    bool
	}{
		{"service", `{{ range service "web" }}{{ . }},{{ end }}`, map[string][]string{"service web": {"a", "b"}}, "a,b,", "", false},
		{"filter argument", `{{ range service "web" "any" }}{{ . }},{{ end }}`, map[string][]string{"service web any": {"c"}}, "c,", "", false},
		{"no name: no query", `{{ len (service "") }}`, nil, "0", "", false},
		{"services nodes node", `{{ services }}{{ nodes }}{{ node "n1" }}`, map[string][]string{"services": {"s"}, "nodes": {"n"}, "node n1": {"x"}}, "[s][n][x]", "", false},
		{"pending holds the render", `before {{ range service "web" }}{{ . }}{{ end }} after`, nil, "", "", true},
		{"pending even when the empty data fails the template", `{{ index (service "web") 0 }}`, nil, "", "", true},
		{"bad argument", `{{ service "bad name" }}`, nil, "", "invalid format", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := ParseString("t.tmpl", tc.text, Options{})
			if err != nil {
				t.Fatal(err)
			}
			cat := &answers{data: tc.data}
			var out bytes.Buffer
			out.WriteString("kept")
			err = tmpl.Execute(&out, Input{Catalog: cat})
			switch {
			case tc.pending:
				var de *Error
				if !errors.Is(err, ErrPending) || errors.As(err, &de) || out.String() != "kept" || cat.done != 1 {
					t.Fatalf("err %v, output %q, Done %d: want ErrPending (not an *Error), nothing written, Done once", err, out.String(), cat.done)
				}
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) || out.String() != "kept" {
					t.Fatalf("err %v, output %q: want %q, nothing written", err, out.String(), tc.err)
				}
			default:
				if err != nil || out.String() != "kept"+tc.want || cat.done != 1 {
					t.Fatalf("output %q, err %v, Done %d: want %q", out.String(), err, cat.done, tc.want)
				}
			}
		})
	}
	tmpl, _ := ParseString("t.tmpl", `{{ service "web" }}`, Options{})
	if err := tmpl.Execute(&bytes.Buffer{}, Input{}); err == nil || !strings.Contains(err.Error(), "no Consul catalog") {
		t.Fatalf("without a catalog: %v", err)
	}
}

// TestCatalogNotMemoized: a block that reads the catalog is rendered
// again when only the catalog changed (its store reads did not), so the
// incremental render stays byte for byte a full render.
func TestCatalogNotMemoized(t *testing.T) {
	tmpl, err := ParseString("t.tmpl", `{{ range $k := ls "/a" }}{{ $k.Key }}:{{ range service $k.Value }}{{ . }} {{ end }};{{ end }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kvs := []store.KV{{Key: "/a/x", Value: []byte("web")}}
	for _, want := range []string{"a b", "a b c"} {
		var out bytes.Buffer
		cat := &answers{data: map[string][]string{"service web": strings.Fields(want)}}
		if err := tmpl.Execute(&out, Input{KVs: kvs, Catalog: cat}); err != nil {
			t.Fatal(err)
		}
		if got, exp := out.String(), "x:"+want+" ;"; got != exp {
			t.Fatalf("got %q, want %q", got, exp)
		}
	}
}
