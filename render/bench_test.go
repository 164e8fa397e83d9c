package render

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
)

// benchInstances is the size of the benchmark's upstream: 10,000 instances.
const benchInstances = 10000

type benchInstance struct {
	IP   string
	Port int
}

const benchTemplate = `upstream app {
{{- range .}}
    server {{.IP}}:{{.Port}};
{{- end}}
}
`

// benchSource renders an nginx upstream over n instances; shift changes
// the output (a different port base).
func benchSource(b *testing.B, n, shift int) Source {
	in := make([]benchInstance, n)
	for i := range in {
		in[i] = benchInstance{IP: fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), Port: 8000 + shift}
	}
	return newTextSource(b, benchTemplate, in, n)
}

// BenchmarkRender is one render alone, into memory: the unit the pipeline
// figures compare with.
func BenchmarkRender(b *testing.B) {
	src := benchSource(b, benchInstances, 0)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := src.Render(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

// BenchmarkPipelineUnchanged is a whole cycle whose output equals the
// destination: one render plus one read, no write, no command.
func BenchmarkPipelineUnchanged(b *testing.B) {
	dest := filepath.Join(b.TempDir(), "upstream.conf")
	r := New(WithLogger(slog.New(slog.DiscardHandler)))
	job := []Job{{Spec: Spec{Dest: dest, Reload: "exit 1"}, Source: benchSource(b, benchInstances, 0)}}
	if _, err := r.Cycle(context.Background(), job); err == nil {
		b.Fatal("the first cycle should have failed on its reload")
	}
	job[0].Spec.Reload = "" // the file is in place; from now on nothing may run
	if _, err := r.Cycle(context.Background(), job); err != nil {
		b.Fatal(err)
	}
	job[0].Spec.Reload = "exit 1" // would fail every iteration if it ran
	b.ReportAllocs()
	for b.Loop() {
		res, err := r.Cycle(context.Background(), job)
		if err != nil || res[0].Changed {
			b.Fatalf("%+v %v", res[0], err)
		}
	}
}

// BenchmarkPipelineChanged is a whole cycle whose output differs every
// time: render, read, stage, fsync, rename, fsync the directory.
func BenchmarkPipelineChanged(b *testing.B) {
	dest := filepath.Join(b.TempDir(), "upstream.conf")
	r := New(WithLogger(slog.New(slog.DiscardHandler)))
	srcs := []Source{benchSource(b, benchInstances, 0), benchSource(b, benchInstances, 1)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		res, err := r.Cycle(context.Background(), []Job{{Spec: Spec{Dest: dest}, Source: srcs[i%2]}})
		if err != nil || !res[0].Changed {
			b.Fatalf("%+v %v", res[0], err)
		}
		i++
	}
}
