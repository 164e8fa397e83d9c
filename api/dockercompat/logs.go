package dockercompat

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/berthd/berth/runtime"
)

// Stream ids of Docker's multiplexed stream framing.
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
)

// muxWriter writes Docker's multiplexed framing: an 8-byte header
// [stream, 0, 0, 0, len uint32 big endian] before each chunk. It is safe
// for concurrent use (an exec's stdout and stderr are copied apart).
type muxWriter struct {
	mu    sync.Mutex
	w     io.Writer
	flush func()
	raw   bool // no framing: the stream of a container created with a TTY
}

func (m *muxWriter) write(stream byte, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.raw {
		if _, err := m.w.Write(p); err != nil {
			return err
		}
		if m.flush != nil {
			m.flush()
		}
		return nil
	}
	var hdr [8]byte
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
	if _, err := m.w.Write(hdr[:]); err != nil {
		return err
	}
	if _, err := m.w.Write(p); err != nil {
		return err
	}
	if m.flush != nil {
		m.flush()
	}
	return nil
}

// streamWriter is one stream of a muxWriter as an io.Writer.
type streamWriter struct {
	m      *muxWriter
	stream byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.m.write(s.stream, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// rfc3339NanoFixed is dockerd's log timestamp format (always 9 digits).
const rfc3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"

var errUntilReached = errors.New("until reached")

// containerLogs serves GET /containers/{id}/logs in the multiplexed
// framing (berth containers have no TTY): tail, since, until, timestamps
// and follow.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	stdout, stderr := boolValue(r, "stdout"), boolValue(r, "stderr")
	if !stdout && !stderr {
		return badRequest("Bad parameters: you must choose at least one stream")
	}
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	tail := 0
	if t := q.Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return badRequest("invalid value for tail: %q (a number or \"all\")", t)
		}
		if n < 0 {
			n = 0
		}
		tail = n
		if n == 0 {
			// tail=0: no history; only what follow brings.
			tail = -1
		}
	}
	since, until, err := parseWindow(q)
	if err != nil {
		return err
	}
	follow := boolValue(r, "follow")
	timestamps := boolValue(r, "timestamps")
	raw := s.hasTTY(c.ID)
	ct := "application/vnd.docker.raw-stream"
	if !raw && !reqVersion(r).before("1.42") {
		ct = "application/vnd.docker.multiplexed-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	mux := &muxWriter{w: bw, raw: raw}
	if follow {
		mux.flush = func() { _ = bw.Flush(); flush(w) }
		flush(w)
	}
	opts := runtime.LogOptions{Follow: follow, Tail: tail}
	skipHistory := tail == -1
	if skipHistory {
		opts.Tail = 1 // what is printed already is skipped below
	}
	started := time.Now()
	ctx := r.Context()
	if follow && !until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	err = s.rt.Logs(ctx, c.ID, opts, func(l runtime.LogLine) error {
		if skipHistory && l.Time.Before(started) {
			return nil
		}
		if !since.IsZero() && l.Time.Before(since) {
			return nil
		}
		if !until.IsZero() && l.Time.After(until) {
			return errUntilReached
		}
		stream := byte(streamStdout)
		if l.Stream == "stderr" {
			if !stderr {
				return nil
			}
			stream = streamStderr
		} else if !stdout {
			return nil
		}
		line := l.Line
		if timestamps {
			line = l.Time.UTC().Format(rfc3339NanoFixed) + " " + line
		}
		return mux.write(stream, []byte(line))
	})
	_ = bw.Flush()
	if err != nil && !errors.Is(err, errUntilReached) {
		s.log.Debug("docker API: logs stream ended", "container", c.ID, "err", err)
	}
	return nil
}

// hasTTY reports whether the container was created with a TTY: its
// streams then go out without framing, as the client expects (berth runs
// it without one).
func (s *Server) hasTTY(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tty[id]
}
