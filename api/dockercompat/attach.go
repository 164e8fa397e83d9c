package dockercompat

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berthd/berth/runtime"
)

// hijack takes over the connection for a raw stream, answering 101
// UPGRADED when the client asked for an upgrade (as the docker CLI and
// the moby client do) and 200 otherwise.
func hijack(w http.ResponseWriter, r *http.Request, raw bool) (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errorf(http.StatusInternalServerError, "the connection cannot be taken over for a stream")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	hdr := "HTTP/1.1 200 OK\r\n"
	if r.Header.Get("Upgrade") != "" {
		hdr = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
	}
	ct := "application/vnd.docker.multiplexed-stream"
	if raw {
		ct = "application/vnd.docker.raw-stream"
	}
	hdr += "Content-Type: " + ct + "\r\nApi-Version: " + APIVersion + "\r\nOstype: linux\r\n\r\n"
	if _, err := brw.WriteString(hdr); err != nil {
		conn.Close()
		return nil, nil, errClientGone
	}
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, errClientGone
	}
	return conn, brw, nil
}

// errClientGone: the connection was taken over and the client went away;
// there is nobody to answer.
var errClientGone = errors.New("the client closed the connection")

// closeWrite ends the stream for the client and closes the connection.
func closeWrite(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	conn.Close()
}

// attachContainer serves POST /containers/{id}/attach, which docker run
// (without -d) opens before it starts the container: the container's
// output from now on (logs=1: also what it printed before), in the
// multiplexed framing, until it stops. berth containers have no stdin:
// what the client sends is read and dropped.
func (s *Server) attachContainer(w http.ResponseWriter, r *http.Request) error {
	stdout, stderr := boolValue(r, "stdout"), boolValue(r, "stderr")
	stream, history := boolValue(r, "stream"), boolValue(r, "logs")
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	if c.State != runtime.StateRunning && c.State != runtime.StateCreated && c.State != runtime.StateRestarting {
		return errorf(http.StatusConflict, "You cannot attach to a stopped container, start it first")
	}
	attachedAt := time.Now()
	s.mu.Lock()
	s.attached[c.ID]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.attached[c.ID]--; s.attached[c.ID] <= 0 {
			delete(s.attached, c.ID)
		}
		s.mu.Unlock()
	}()
	conn, brw, err := hijack(w, r, s.hasTTY(c.ID))
	if err != nil {
		if errors.Is(err, errClientGone) {
			return nil
		}
		return err
	}
	defer closeWrite(conn)
	// stdin: berth has none. Read from the connection itself: reading
	// through the server's reader would cancel the request context at
	// the client's half-close.
	go func() { _, _ = io.Copy(io.Discard, stdinReader(brw.Reader, conn)) }()
	ctx := r.Context()
	if stream && c.State != runtime.StateRunning {
		// docker run attaches before it starts the container: wait for
		// the start (or a failed start, which dockerd reports as die).
		started := false
		for !started {
			select {
			case <-ctx.Done():
				return nil
			case m, ok := <-sub.ch:
				if !ok {
					return nil
				}
				started = m.Type == events.ContainerEventType && m.Actor.ID == c.ID &&
					(m.Action == events.ActionStart || m.Action == events.ActionDie || m.Action == events.ActionDestroy)
			}
		}
	}
	mux := &muxWriter{w: conn, raw: s.hasTTY(c.ID)}
	err = s.rt.Logs(ctx, c.ID, runtime.LogOptions{Follow: stream}, func(l runtime.LogLine) error {
		if !history && l.Time.Before(attachedAt) {
			return nil
		}
		switch {
		case l.Stream == "stderr" && stderr:
			return mux.write(streamStderr, []byte(l.Line))
		case l.Stream != "stderr" && stdout:
			return mux.write(streamStdout, []byte(l.Line))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		s.log.Debug("docker API: attach stream ended", "container", c.ID, "err", err)
	}
	return nil
}

// startFailed reports a start that failed the way dockerd does: a die
// event with the exit code a shell would give (127: command not found),
// which ends docker run's wait and attach.
func (s *Server) startFailed(c runtime.Container, err error) {
	code := "128"
	if errors.Is(err, runtime.ErrCommandNotFound) {
		code = "127"
	}
	s.hub.publish(containerMessage(events.ActionDie, c, map[string]string{"exitCode": code}, time.Now()))
}
