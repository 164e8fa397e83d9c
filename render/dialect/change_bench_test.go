package dialect

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/store"
)

// naturalUpstreams is the native template a user writes for the peer
// workload (issue #14): lsdir, tree, fromJson.
const naturalUpstreams = `{{- range $name := lsdir "/services" }}
upstream {{ $name }} {
{{- range tree (printf "services/%s" $name) }}{{ with .Value | fromJson }}
    server {{ .host }}:{{ .port }};
{{- end }}{{ end }}
}
{{- end }}
`

// peerInput is the peer harness's workload: n instances under
// /services/<svc>/<id>, ten per service, values {"host":…,"port":…}.
func peerInput(n int) Input {
	kv := make([]store.KV, 0, n)
	for i := range n {
		kv = append(kv, store.KV{
			Key:         fmt.Sprintf("/services/svc-%04d/i-%06d", i/10, i),
			Value:       fmt.Appendf(nil, `{"host":"127.0.%d.%d","port":8080}`, i/256%256, i%256),
			ModRevision: store.Revision(i + 1),
		})
	}
	slices.SortFunc(kv, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return Input{Revision: store.Revision(n), KVs: kv, Env: map[string]string{}}
}

// changeOne returns in with one key's value changed at a new revision, as
// a mirror's snapshot after one put: a new slice, the other entries shared.
func changeOne(in Input, i, port int) Input {
	kvs := append([]store.KV(nil), in.KVs...)
	rev := in.Revision + 1
	kv := kvs[i]
	kv.Value = fmt.Appendf(nil, `{"host":"127.0.%d.%d","port":%d}`, i/256%256, i%256, port)
	kv.ModRevision = rev
	kvs[i] = kv
	return Input{Revision: rev, KVs: kvs, Env: in.Env}
}

// BenchmarkNaturalChange renders the natural template after one change,
// as berth watch does on every put, at 100, 1,000 and 10,000 instances.
func BenchmarkNaturalChange(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tm, err := ParseString("natural.tmpl", naturalUpstreams, Options{})
			if err != nil {
				b.Fatal(err)
			}
			in := peerInput(n)
			var buf bytes.Buffer
			if err := tm.Execute(&buf, in); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				in = changeOne(in, (i*7919)%n, 20000+i%20000)
				i++
				buf.Reset()
				if err := tm.Execute(&buf, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/output")
		})
	}
}

// BenchmarkNaturalCold renders the natural template once with a fresh
// template, as berth render (one-shot) does: kept (a memo for the next
// execution, as berth watch's first render) and Once (none).
func BenchmarkNaturalCold(b *testing.B) {
	in := peerInput(10000)
	for _, once := range []bool{false, true} {
		b.Run(map[bool]string{false: "kept", true: "once"}[once], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tm, err := ParseString("natural.tmpl", naturalUpstreams, Options{Once: once})
				if err != nil {
					b.Fatal(err)
				}
				var buf bytes.Buffer
				if err := tm.Execute(&buf, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOnceSameOutput: a template parsed with Once keeps no memo and renders
// what a kept one renders (the natural template, and one of ls, gets,
// fromJson and tree), on the peer workload and after changes.
func TestOnceSameOutput(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"natural", naturalUpstreams},
		{"ranges", `{{range $d := ls "/services"}}{{$d}}:{{range gets (printf "/services/%s/*" $d)}}{{.Key}}={{(fromJson .Value).port}} {{end}}
{{end}}{{len (tree "services")}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kept, err := ParseString(tc.name, tc.text, Options{})
			if err != nil {
				t.Fatal(err)
			}
			in := peerInput(300)
			for i := range 5 {
				once, err := ParseString(tc.name, tc.text, Options{Once: true})
				if err != nil {
					t.Fatal(err)
				}
				if once.memo != nil {
					t.Fatal("a template parsed with Once keeps a memo")
				}
				var a, b bytes.Buffer
				if err := kept.Execute(&a, in); err != nil {
					t.Fatal(err)
				}
				if err := once.Execute(&b, in); err != nil {
					t.Fatal(err)
				}
				if a.String() != b.String() {
					t.Fatalf("after %d changes: Once renders\n%.300s\nkept renders\n%.300s", i, b.String(), a.String())
				}
				in = changeOne(in, (i*37)%len(in.KVs), 9000+i)
			}
		})
	}
}
