package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// Sentinel errors every implementation wraps, so callers (the API, the
// CLI) can map them to a status without parsing messages.
var (
	// ErrNotFound: no container or image with that id or name.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the name is in use, or the container is in a state that
	// forbids the operation (removing a running container without force).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the request itself is malformed (bad reference, bad
	// memory value, bad port mapping).
	ErrInvalid = errors.New("invalid argument")
)

// Errorf formats an error that matches kind (one of the sentinels above)
// with errors.Is, and whose text is the message alone: "no such container:
// x", not "no such container: x: not found". %w in format wraps as usual.
func Errorf(kind error, format string, args ...any) error {
	return kindError{fmt.Errorf(format, args...), kind}
}

type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// Runtime runs containers. Implementations are safe for concurrent use.
type Runtime interface {
	// Run creates and starts a container, returning once its process runs.
	Run(ctx context.Context, spec Spec) (Container, error)
	// Stop sends the stop signal, waits up to grace, then kills.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove deletes a stopped container (a running one with Force()).
	Remove(ctx context.Context, id string, opts ...RemoveOption) error
	// List returns every container, running or not.
	List(ctx context.Context) ([]Container, error)
	// Inspect returns one container by id, id prefix or name.
	Inspect(ctx context.Context, id string) (Container, error)
	// Events streams lifecycle events until ctx ends; see the package doc
	// for who closes the channels.
	Events(ctx context.Context) (<-chan Event, <-chan error)
}

// ErrSlowConsumer ends an event stream (on its error channel) whose reader
// fell too far behind: events were dropped; the reader subscribes again.
var ErrSlowConsumer = errors.New("event subscriber too slow: events dropped")

// Engine is a Runtime with the rest of a container engine's API: create
// without starting, start, restart, signal, logs and exec. The
// Docker-compatible API (api/dockercompat) serves it; runtime/embedded
// implements it.
type Engine interface {
	Runtime
	// Create creates a container without starting it; expose lists ports
	// the container exposes without publishing them.
	Create(ctx context.Context, spec Spec, expose ...Port) (Container, error)
	// Start starts a created or exited container.
	Start(ctx context.Context, id string) error
	// Restart stops the container (with grace, as Stop) and starts it.
	Restart(ctx context.Context, id string, grace time.Duration) error
	// Kill sends sig to the container's process (a kill event first).
	Kill(ctx context.Context, id string, sig syscall.Signal) error
	// ContainerSpec returns the spec a container was created from.
	ContainerSpec(id string) (Spec, error)
	// Logs sends the container's output lines to fn in order, until the
	// end of what was written or, with Follow, until the container stops
	// or ctx ends. An error from fn ends Logs with it.
	Logs(ctx context.Context, id string, opts LogOptions, fn func(LogLine) error) error
	// Exec runs a command inside a running container and returns its exit
	// code; when ctx ends the command is killed.
	Exec(ctx context.Context, id string, opts ExecOptions) (int, error)
}

// LogOptions selects what Logs returns.
type LogOptions struct {
	Follow bool // keep streaming until the container stops or ctx ends
	Tail   int  // only the last Tail lines; <= 0 means all
}

// LogLine is one line of container output.
type LogLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"` // "stdout" or "stderr"
	Line   string    `json:"log"`    // with its trailing newline, if any
}

// ErrCommandNotFound: the command of a container or of an Exec does not
// exist in its image (Docker exits 127 for it).
var ErrCommandNotFound = errors.New("command not found")

// ExecOptions describes a command to run in a running container.
type ExecOptions struct {
	Cmd    []string
	Env    []string // added to the container's
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer // unused with TTY (a terminal has one output)
	// TTY gives the command a terminal of Size; Resize changes its size
	// while the command runs.
	TTY    bool
	Size   TermSize
	Resize <-chan TermSize
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// RemoveOption tunes Remove.
type RemoveOption func(*RemoveOptions)

// RemoveOptions is what RemoveOption functions set.
type RemoveOptions struct {
	Force bool // kill a running container first
}

// Force makes Remove kill a running container instead of refusing.
func Force() RemoveOption { return func(o *RemoveOptions) { o.Force = true } }

// ApplyRemoveOptions folds opts into a RemoveOptions.
func ApplyRemoveOptions(opts []RemoveOption) RemoveOptions {
	var o RemoveOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}
