package api

import (
	"errors"
	"net/http"

	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/embedded/image"
)

// DefaultSocket is where the daemon listens unless told otherwise.
const DefaultSocket = "/run/berth/berth.sock"

// Frame is one line of a streamed response. Exactly one group of fields
// is set per frame.
type Frame struct {
	// logs
	Log *runtime.LogLine `json:"log,omitempty"`
	// exec output
	Output *Output `json:"output,omitempty"`
	// exec: the final frame
	ExitCode *int `json:"exit_code,omitempty"`
	// events
	Event *runtime.Event `json:"event,omitempty"`
	// pull progress, then the final image
	Progress *image.Progress `json:"progress,omitempty"`
	Image    *image.Image    `json:"image,omitempty"`
	// a failure after the stream started; ends the stream
	Error *Error `json:"error,omitempty"`
}

// Output is a chunk of an exec'd command's output, as written.
type Output struct {
	Stream string `json:"stream"` // stdout or stderr
	Data   []byte `json:"data"`
}

// ExecRequest starts the body of an exec call. With Stdin or TTY, the
// body goes on with ExecInput values while the response streams the
// output (both directions at once on one connection); the command's
// stdin ends when the body does or with CloseStdin.
type ExecRequest struct {
	Cmd   []string         `json:"cmd"`
	Env   []string         `json:"env,omitempty"`
	Stdin bool             `json:"stdin,omitempty"` // attach stdin (else it is empty)
	TTY   bool             `json:"tty,omitempty"`   // give the command a terminal
	Size  runtime.TermSize `json:"size,omitzero"`   // its initial size
}

// ExecInput is one value of an exec body after the ExecRequest.
type ExecInput struct {
	Stdin      []byte            `json:"stdin,omitempty"`
	CloseStdin bool              `json:"close_stdin,omitempty"`
	Resize     *runtime.TermSize `json:"resize,omitempty"`
}

// Error kinds, mapped to and from the runtime's sentinel errors.
const (
	KindNotFound        = "not_found"
	KindConflict        = "conflict"
	KindInvalid         = "invalid"
	KindCommandNotFound = "command_not_found"
	KindDigestMismatch  = "digest_mismatch"
	KindInternal        = "internal"
)

// Error is an API error as sent on the wire.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap maps the kind back to the sentinel, so errors.Is works on the
// client side as on the daemon's.
func (e *Error) Unwrap() error {
	for _, k := range kinds() {
		if k.kind == e.Kind {
			return k.err
		}
	}
	return nil
}

type kind struct {
	kind   string
	err    error
	status int
}

// kinds maps error kinds to sentinels and HTTP statuses, most specific
// first.
func kinds() []kind {
	return []kind{
		{KindCommandNotFound, runtime.ErrCommandNotFound, http.StatusBadRequest},
		{KindDigestMismatch, image.ErrDigestMismatch, http.StatusBadRequest},
		{KindNotFound, runtime.ErrNotFound, http.StatusNotFound},
		{KindConflict, runtime.ErrConflict, http.StatusConflict},
		{KindInvalid, runtime.ErrInvalid, http.StatusBadRequest},
	}
}

// toError classifies err for the wire and picks the HTTP status.
func toError(err error) (*Error, int) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae, http.StatusInternalServerError
	}
	for _, k := range kinds() {
		if errors.Is(err, k.err) {
			return &Error{Kind: k.kind, Message: err.Error()}, k.status
		}
	}
	return &Error{Kind: KindInternal, Message: err.Error()}, http.StatusInternalServerError
}
