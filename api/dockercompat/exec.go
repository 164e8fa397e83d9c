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
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berthd/berth/api"
	"github.com/berthd/berth/runtime"
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
	// resize carries POST /exec/{id}/resize to the running command's
	// terminal (the latest size kept when the command is slow to take it).
	resize chan runtime.TermSize

	mu       sync.Mutex
	size     runtime.TermSize // the terminal's size before the start
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
	if req.User != "" || req.WorkingDir != "" || req.Privileged {
		return badRequest("berth runs exec as the container's user in its working directory: --user, --workdir and --privileged are not supported")
	}
	if c.State != runtime.StateRunning {
		return errorf(http.StatusConflict, "container %s is not running", c.ID)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	e := &execState{id: hex.EncodeToString(b), containerID: c.ID, cfg: req, created: time.Now(),
		resize: make(chan runtime.TermSize, 1)}
	if req.Tty && req.ConsoleSize != nil {
		if e.size, err = consoleSize(*req.ConsoleSize); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if len(s.execs) >= maxExecs {
		s.pruneExecsLocked()
	}
	s.execs[e.id] = e
	s.mu.Unlock()
	api.WriteJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: e.id})
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

// consoleSize checks a [height, width] console size.
func consoleSize(hw [2]uint) (runtime.TermSize, error) {
	if hw[0] > 0xffff || hw[1] > 0xffff {
		return runtime.TermSize{}, badRequest("console size %dx%d: height and width must be at most 65535", hw[0], hw[1])
	}
	return runtime.TermSize{Rows: uint16(hw[0]), Cols: uint16(hw[1])}, nil
}

// startExec runs the exec instance. Detached, it answers at once;
// otherwise it takes over the connection (101 UPGRADED when the client
// asked for an upgrade, as the docker CLI does) and streams the output,
// with the connection as stdin when attached. As with dockerd, the start
// request's Tty picks the framing: raw with it, multiplexed without;
// the exec's (create's) Tty gives the command a terminal.
func (s *Server) startExec(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	var req container.ExecStartRequest
	if err := decodeBody(r, &req, true); err != nil {
		return err
	}
	var startSize *runtime.TermSize
	if req.ConsoleSize != nil && e.cfg.Tty {
		sz, err := consoleSize(*req.ConsoleSize)
		if err != nil {
			return err
		}
		startSize = &sz
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errorf(http.StatusConflict, "exec %s has already run", e.id)
	}
	e.started = true
	if startSize != nil {
		e.size = *startSize
	}
	size := e.size
	e.mu.Unlock()
	c, err := s.rt.Inspect(r.Context(), e.containerID)
	if err != nil || c.State != runtime.StateRunning {
		s.finishExec(e, -1)
		return errorf(http.StatusConflict, "container %s is not running", e.containerID)
	}
	opts := runtime.ExecOptions{Cmd: e.cfg.Cmd, Env: e.cfg.Env}
	if e.cfg.Tty {
		opts.TTY, opts.Size, opts.Resize = true, size, e.resize
	}
	if req.Detach {
		go func() {
			code, _ := s.rt.Exec(context.Background(), e.containerID, opts)
			s.finishExec(e, code)
		}()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	conn, brw, err := hijack(w, r, req.Tty)
	if err != nil {
		s.finishExec(e, -1)
		if errors.Is(err, errClientGone) {
			return nil
		}
		return err
	}
	defer conn.Close()
	mux := &muxWriter{w: conn, raw: req.Tty}
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
	api.WriteJSON(w, http.StatusOK, container.ExecInspectResponse{
		ID: e.id, Running: e.started && !e.finished, ExitCode: code,
		ProcessConfig: &container.ExecProcessConfig{Tty: e.cfg.Tty, Entrypoint: entry, Arguments: args},
		OpenStdin:     e.cfg.AttachStdin, OpenStdout: e.cfg.AttachStdout, OpenStderr: e.cfg.AttachStderr,
		ContainerID: e.containerID, CanRemove: e.finished,
	})
	return nil
}

// resizeExec serves POST /exec/{id}/resize?h=&w=: the running command's
// terminal takes the size at once; before the start it is the size the
// terminal starts with (the docker CLI may resize before its start
// request is served).
func (s *Server) resizeExec(w http.ResponseWriter, r *http.Request) error {
	e, err := s.execByID(r.PathValue("id"))
	if err != nil {
		return err
	}
	var hw [2]uint
	for i, k := range []string{"h", "w"} {
		v := r.URL.Query().Get(k)
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return badRequest("resize exec %s: %s=%q is not a number from 0 to 65535", e.id, k, v)
		}
		hw[i] = uint(n)
	}
	if !e.cfg.Tty {
		return badRequest("exec %s has no terminal to resize: it was created without Tty", e.id)
	}
	sz := runtime.TermSize{Rows: uint16(hw[0]), Cols: uint16(hw[1])}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.finished:
		return errorf(http.StatusConflict, "exec %s is not running", e.id)
	case !e.started:
		e.size = sz
	default:
		select {
		case <-e.resize: // drop a size the command has not taken yet
		default:
		}
		e.resize <- sz
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
