package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestSendProgress: nothing is shown for a transfer under a second; past
// that, one line per 10% of a known size, and a closing total.
func TestSendProgress(t *testing.T) {
	tests := []struct {
		name      string
		size      int64
		total     int64
		perRead   time.Duration
		wantLines int    // progress lines before the closing one
		wantLast  string // the closing line's start, "" for no output at all
	}{
		{"fast: silent", 1 << 20, 1 << 20, time.Microsecond, 0, ""},
		// 160 reads of 64 KiB at 20ms: the first second is silent, then every 10%
		{"slow, known size", 10 << 20, 10 << 20, 20 * time.Millisecond, 7, "sent 10.49MB in "},
		{"slow, unknown size", 10 << 20, 0, 20 * time.Millisecond, 0, "sent 10.49MB in "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := time.Unix(0, 0)
			now := func() time.Time { clock = clock.Add(tc.perRead); return clock }
			var out bytes.Buffer
			p := newSendProgress(bytes.NewReader(make([]byte, tc.size)), tc.total, &out, now)
			buf := make([]byte, 64<<10)
			var n int64
			for {
				k, err := p.Read(buf)
				n += int64(k)
				if errors.Is(err, io.EOF) {
					break
				}
			}
			p.finish()
			if n != tc.size {
				t.Fatalf("read %d bytes through the progress reader, want %d", n, tc.size)
			}
			if tc.wantLast == "" {
				if out.Len() != 0 {
					t.Fatalf("output %q, want none", out.String())
				}
				return
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if got := len(lines) - 1; got != tc.wantLines {
				t.Errorf("%d progress lines, want %d:\n%s", got, tc.wantLines, out.String())
			}
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.wantLast) {
				t.Errorf("last line %q, want it to start with %q", last, tc.wantLast)
			}
		})
	}
}

// TestPullHint: an unreachable registry gets the offline way in; other
// errors are left as they are.
func TestPullHint(t *testing.T) {
	for _, tc := range []struct {
		err  string
		hint bool
	}{
		{`pull 127.0.0.1:1/x:1: Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`, true},
		{`pull registry.example/x:1: dial tcp: lookup registry.example: no such host`, true},
		{`pull 127.0.0.1:5000/test/none:1: MANIFEST_UNKNOWN: manifest unknown`, false},
	} {
		got := pullHint(errors.New(tc.err)).Error()
		if has := strings.Contains(got, "berth load"); has != tc.hint {
			t.Errorf("pullHint(%q) = %q: hint given %v, want %v", tc.err, got, has, tc.hint)
		}
	}
}
