package dialect

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/berthd/berth/store"
)

// incrementalTemplates read the store in every way a memoized block can:
// listings, trees, keys, patterns, nested blocks, blocks calling defined
// templates, ranges that are not memoized (outer variables, $) next to
// ones that are.
var incrementalTemplates = map[string]string{
	"natural":         naturalUpstreams,
	"tree over pairs": `{{ range tree "a" }}{{ .Key }}={{ .Value }}@{{ .ModRevision }};{{ end }}`,
	"nested":          `{{ range $d := lsdir "/a" }}[{{ $d }}:{{ range $e := ls (printf "/a/%s" $d) }}{{ $e }}({{ keyOrDefault (printf "a/%s/%s" $d $e) "-" }}){{ end }}]{{ else }}none{{ end }}`,
	"define": `{{ define "row" }}{{ $k := printf "/%s" . }}{{ if exists $k }}{{ getv $k }}{{ else }}missing{{ end }}{{ end }}` +
		`{{ range $n := list "a/b" "b" "c/a" "svc" }}{{ $n }}={{ template "row" $n }};{{ end }}`,
	"patterns":       `{{ range $p := list "/a/*" "/*/b" "/b/*/*" }}{{ range gets $p }}{{ .Key }} {{ end }}|{{ range getvs $p }}{{ . }}{{ end }};{{ end }}`,
	"outer variable": `{{ $sep := ", " }}{{ range $d := lsdir "/a" }}{{ $d }}{{ $sep }}{{ range tree (printf "a/%s" $d) }}{{ .Key }}{{ end }}{{ end }}`,
	"root data":      `{{ range $d := lsdir "/b" }}{{ $d }}@{{ $.Revision }}{{ end }}`,
	"assigns outer":  `{{ $n := 0 }}{{ range $d := lsdir "/a" }}{{ $n = add $n 1 }}{{ $d }}{{ end }}={{ $n }}`,
	"json":           `{{ range $d := lsdir "/" }}{{ end }}{{ range $k := list "a" "b" "c" }}{{ range tree $k }}{{ with .Value | fromJson }}{{ .v }}{{ end }}{{ end }};{{ end }}`,
	"break":          `{{ range $d := lsdir "/a" }}{{ if eq $d "b" }}{{ break }}{{ end }}{{ $d }}{{ end }}`,
	"empty and else": `{{ range $d := lsdir "/nothing" }}{{ $d }}{{ else }}{{ range tree "b" }}{{ .Key }}{{ end }}{{ end }}`,
}

// TestIncrementalMatchesFullRenders renders each template after random
// change sequences with one long-lived template (its blocks memoized) and
// compares every output with a full render (the same text parsed without
// memoization: AllowNondeterministic turns it off).
func TestIncrementalMatchesFullRenders(t *testing.T) {
	for name, text := range incrementalTemplates {
		t.Run(name, func(t *testing.T) {
			inc, err := ParseString("inc.tmpl", text, Options{})
			if err != nil {
				t.Fatal(err)
			}
			full, err := ParseString("inc.tmpl", text, Options{AllowNondeterministic: true})
			if err != nil {
				t.Fatal(err)
			}
			if full.blocks != 0 {
				t.Fatalf("the full render memoizes %d blocks", full.blocks)
			}
			for seed := range uint64(10) {
				rng := rand.New(rand.NewPCG(seed, 77))
				var kvs []store.KV
				for step := range 40 {
					kvs = randomSnapshot(rng, kvs, 1+rng.IntN(3))
					for i := range kvs {
						if rng.IntN(10) == 0 { // a value changes in place
							kvs[i].Value = fmt.Appendf(nil, `{"v":%d}`, rng.IntN(3))
							kvs[i].ModRevision = store.Revision(step)
						}
					}
					in := Input{Revision: store.Revision(step), KVs: kvs, Env: map[string]string{}}
					var got, want bytes.Buffer
					gotErr, wantErr := inc.Execute(&got, in), full.Execute(&want, in)
					if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
						t.Fatalf("seed %d step %d: error %v, full render's %v", seed, step, gotErr, wantErr)
					}
					if !bytes.Equal(got.Bytes(), want.Bytes()) {
						t.Fatalf("seed %d step %d:\nincremental %q\nfull        %q", seed, step, got.String(), want.String())
					}
				}
			}
		})
	}
}

// TestMemoizedBlocks: which range bodies are memoized.
func TestMemoizedBlocks(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{naturalUpstreams, 1},
		{`{{ range .Services }}{{ .Name }}{{ end }}`, 1}, // memoized, though a list of records never names an iteration
		{`{{ $x := 1 }}{{ range lsdir "/a" }}{{ $x }}{{ end }}`, 0},
		{`{{ $x := 1 }}{{ range lsdir "/a" }}{{ $x := 2 }}{{ $x }}{{ end }}`, 1},
		{`{{ range lsdir "/a" }}{{ with $x := 2 }}{{ $x }}{{ end }}{{ end }}`, 1},
		{`{{ $x := 1 }}{{ range lsdir "/a" }}{{ with $x := 2 }}{{ end }}{{ $x }}{{ end }}`, 0},
		{`{{ range lsdir "/a" }}{{ $.Revision }}{{ end }}`, 0},
		{`{{ range lsdir "/a" }}{{ env "HOME" }}{{ end }}`, 0},
		{`{{ range lsdir "/a" }}{{ warn "x" }}{{ end }}`, 0},
		{`{{ range lsdir "/a" }}{{ continue }}{{ end }}`, 0},
		{`{{ define "t" }}{{ env "X" }}{{ end }}{{ range lsdir "/a" }}{{ template "t" . }}{{ end }}`, 0},
		{`{{ define "t" }}{{ getv . }}{{ end }}{{ range lsdir "/a" }}{{ template "t" . }}{{ end }}`, 1},
		// mutual recursion: b is impure through a, whose env comes after its call to b
		{`{{ define "a" }}{{ if . }}{{ template "b" "" }}{{ end }}{{ env "X" }}{{ end }}{{ define "b" }}{{ if . }}{{ template "a" "" }}{{ end }}{{ end }}{{ range lsdir "/x" }}{{ template "a" . }}{{ end }}{{ range lsdir "/a" }}{{ template "b" . }}{{ end }}`, 0},
		{`{{ define "a" }}{{ if . }}{{ template "b" "" }}{{ end }}{{ end }}{{ define "b" }}{{ if . }}{{ template "a" "" }}{{ end }}{{ end }}{{ range lsdir "/a" }}{{ template "b" . }}{{ end }}`, 1},
		{`{{ range lsdir "/a" }}{{ template "nowhere" . }}{{ end }}`, 0},
		{`{{ range .Services }}{{ with endpoints nil }}{{ end }}{{ end }}`, 0},
		{`{{ $v := 0 }}{{ range lsdir "/a" }}{{ range ls . }}{{ $v }}{{ end }}{{ end }}`, 0},
		{`{{ range lsdir "/a" }}{{ $v := 0 }}{{ range ls . }}{{ $v }}{{ end }}{{ end }}`, 1},
		{`{{ $v := 0 }}{{ range lsdir "/a" }}{{ $v }}{{ range ls . }}{{ . }}{{ end }}{{ end }}`, 1}, // the inner one
	}
	for _, tt := range tests {
		tm, err := ParseString("m.tmpl", tt.text, Options{})
		if err != nil {
			t.Fatalf("%s: %v", tt.text, err)
		}
		if tm.blocks != tt.want {
			t.Errorf("%s: %d blocks memoized, want %d", tt.text, tm.blocks, tt.want)
		}
	}
}

// TestMemoFunctionsAreNotCallable: a template cannot call the functions
// the rewrite inserts.
func TestMemoFunctionsAreNotCallable(t *testing.T) {
	for _, f := range []string{memoBeginFunc, memoEndFunc} {
		if _, err := ParseString("m.tmpl", "{{ "+f+" 0 }}", Options{}); err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("calling %s: %v", f, err)
		}
	}
}

// TestIncrementalRereadsChangedBlocks: after one value changes, only that
// service's block runs again (its store reads say so), and the output is
// the full render's.
func TestIncrementalRereadsChangedBlocks(t *testing.T) {
	in := peerInput(200)
	tm, err := ParseString("natural.tmpl", naturalUpstreams, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var first bytes.Buffer
	if err := tm.Execute(&first, in); err != nil {
		t.Fatal(err)
	}
	in = changeOne(in, 57, 9999)
	var got bytes.Buffer
	if err := tm.Execute(&got, in); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.String(), ":9999;") || len(tm.memo.blocks) != 20 {
		t.Errorf("output has the change: %v; %d blocks cached, want 20", strings.Contains(got.String(), ":9999;"), len(tm.memo.blocks))
	}
	changed := 0
	for k, b := range tm.memo.blocks {
		if bytes.Contains(b.out, []byte(":9999;")) {
			changed++
			if k.a0 != "svc-0005" {
				t.Errorf("the change is in block %v", k.a0)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d blocks hold the change", changed)
	}
}
