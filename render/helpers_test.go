package render

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
)

// textSource is a Source over a plain text/template, so that the pipeline
// tests do not depend on a dialect.
type textSource struct {
	t     *template.Template
	data  any
	count int
}

func newTextSource(t testing.TB, text string, data any, count int) textSource {
	t.Helper()
	tm, err := template.New("t").Option("missingkey=error").Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return textSource{t: tm, data: data, count: count}
}

func (s textSource) Render(w io.Writer) error { return s.t.Execute(w, s.data) }
func (s textSource) Count() int               { return s.count }

// staticSource renders fixed bytes.
type staticSource struct {
	data  []byte
	count int
}

func (s staticSource) Render(w io.Writer) error { _, err := w.Write(s.data); return err }
func (s staticSource) Count() int               { return s.count }

func static(s string) staticSource { return staticSource{data: []byte(s), count: 1} }

// testRenderer returns a Renderer that logs into the test log.
func testRenderer(t testing.TB) *Renderer {
	return New(WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// writeScript writes an executable shell script into dir and returns its path.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines counts the lines of a log file written by a script ("" if absent).
func logLines(t testing.TB, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(bytes.TrimSpace(b)))
}

func cycle(t testing.TB, r *Renderer, jobs ...Job) ([]Result, error) {
	t.Helper()
	return r.Cycle(context.Background(), jobs)
}

// noTemps fails if a staging file was left in dir.
func noTemps(t testing.TB, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".berth-") {
			t.Errorf("staging file left behind: %s", e.Name())
		}
	}
}
