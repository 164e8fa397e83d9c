package runtime

import (
	"context"
	"errors"
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
