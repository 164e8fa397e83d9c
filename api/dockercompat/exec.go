package dockercompat

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded"
)

// maxExecs bounds the finished exec instances kept for inspection.
const maxExecs = 256

// execState is one exec instance (POST /containers/{id}/exec), run once
// by POST /exec/{id}/start.
type execState struct {
	id          string
	containerID string
	cfg         container.ExecCreateRequest
	created     time.Time

	mu       sync.Mutex
	started  bool
	finished bool
	exitCode *int
}

func (e *execState) running() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started && !e.finished
}

func (s *Server) createExec(w http.ResponseWriter, r *http.Request) error {
	c, err := s.lookup(r)
	if err != nil {
		return err
	}
	var req container.ExecCreateRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if len(req.Cmd) == 0 {
		return badRequest("No exec command specified")
	}
	if req.Tty {
		return badRequest("berth runs exec without a TTY: drop -t")
	}
	if req.User != "" || req.WorkingDir != "" || req.Privileged {
		return badRequest("berth runs exec as the container's user in its working directory: --user, --workdir and --privileged are not supported")
	}
	if c.State != runtime.StateRunning {
		return errorf(http.StatusConflict, "container %s is not running", c.ID)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	e := &execState{id: hex.EncodeToString(b), containerID: c.ID, cfg: req, created: time.Now()}
	s.mu.Lock()
	if len(s.execs) >= maxExecs {
		s.pruneExecsLocked()
	}
	s.execs[e.id] = e
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: e.id})
	return nil
}

// pruneExecsLocked drops the oldest finished exec instances.
func (s *Server) pruneExecsLocked() {
	var oldest *execState
	for _, e := range s.execs {
		e.mu.Lock()
		done := e.finished || !e.started && time.Since(e.created) > 10*time.Minute
		e.mu.Unlock()
		if done && (oldest == nil || e.created.Before(oldest.created)) {
			oldest = e
		}
	}
	if oldest != nil {
		delete(s.execs, oldest.id)
	}
}

func (s *Server) execByID(id string) (*execState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.execs[id]
	if !ok {
		return nil, errorf(http.StatusNotFound, "No such exec instance: %s", id)
	}
	return e, nil
}

// startExec runs the exec instance. Detached, it answers at once;
// otherwise it takes over the connection (101 UPGRADED when the client
// asked for an upgrade, as the docker CLI does) and streams the output in
// the multiplexed framing, with the connection as stdin when attached.
func (s *Server) startExec(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	var req container.ExecStartRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	if req.Tty {
		return badRequest("berth runs exec without a TTY: drop -t")
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errorf(http.StatusConflict, "exec %s has already run", e.id)
	}
	e.started = true
	e.mu.Unlock()
	c, err := s.rt.Inspect(r.Context(), e.containerID)
	if err != nil || c.State != runtime.StateRunning {
		s.finishExec(e, -1)
		return errorf(http.StatusConflict, "container %s is not running", e.containerID)
	}
	opts := embedded.ExecOptions{Cmd: e.cfg.Cmd, Env: e.cfg.Env}
	if req.Detach {
		go func() {
			code, _ := s.rt.Exec(context.Background(), e.containerID, opts)
			s.finishExec(e, code)
		}()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	conn, brw, err := hijack(w, r, false)
	if err != nil {
		s.finishExec(e, -1)
		if errors.Is(err, errClientGone) {
			return nil
		}
		return err
	}
	defer conn.Close()
	mux := &muxWriter{w: conn}
	if e.cfg.AttachStdout || !e.cfg.AttachStderr {
		opts.Stdout = streamWriter{mux, streamStdout}
	}
	if e.cfg.AttachStderr || !e.cfg.AttachStdout {
		opts.Stderr = streamWriter{mux, streamStderr}
	}
	if e.cfg.AttachStdin {
		opts.Stdin = stdinReader(brw.Reader, conn)
	}
	// The exec ends with the process, or when the server shuts down
	// (the request context derives from the server's).
	code, err := s.rt.Exec(r.Context(), e.containerID, opts)
	if err != nil {
		s.log.Debug("docker API: exec ended with an error", "exec", e.id, "err", err)
	}
	s.finishExec(e, code)
	closeWrite(conn)
	return nil
}

// stdinReader reads the client's stdin from what the HTTP reader already
// buffered, then the connection.
func stdinReader(br *bufio.Reader, conn net.Conn) io.Reader {
	if br.Buffered() > 0 {
		buf, _ := br.Peek(br.Buffered())
		return io.MultiReader(bytesReader(buf), conn)
	}
	return conn
}

func bytesReader(b []byte) io.Reader {
	c := make([]byte, len(b))
	copy(c, b)
	return &sliceReader{b: c}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func (s *Server) finishExec(e *execState, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.finished = true
	e.exitCode = &code
}

func (s *Server) inspectExec(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var code *int
	if e.exitCode != nil {
		c := *e.exitCode
		code = &c
	}
	entry, args := e.cfg.Cmd[0], e.cfg.Cmd[1:]
	writeJSON(w, http.StatusOK, container.ExecInspectResponse{
		ID: e.id, Running: e.started && !e.finished, ExitCode: code,
		ProcessConfig: &container.ExecProcessConfig{Entrypoint: entry, Arguments: args},
		OpenStdin:     e.cfg.AttachStdin, OpenStdout: e.cfg.AttachStdout, OpenStderr: e.cfg.AttachStderr,
		ContainerID: e.containerID, CanRemove: e.finished,
	})
	return nil
}
