package runtime_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/berthd/berth/runtime"
)

// TestErrorf: the kind matches with errors.Is, so does a wrapped cause,
// and the text is the message alone.
func TestErrorf(t *testing.T) {
	for _, tc := range []struct {
		err      error
		kind     error
		cause    error
		wantText string
	}{
		{runtime.Errorf(runtime.ErrNotFound, "no such container: %s", "x"), runtime.ErrNotFound, nil, "no such container: x"},
		{runtime.Errorf(runtime.ErrInvalid, "request body: %w", fs.ErrClosed), runtime.ErrInvalid, fs.ErrClosed, "request body: file already closed"},
	} {
		if got := tc.err.Error(); got != tc.wantText {
			t.Errorf("Error() = %q, want %q", got, tc.wantText)
		}
		if !errors.Is(tc.err, tc.kind) {
			t.Errorf("%q does not match %v", tc.err, tc.kind)
		}
		if tc.cause != nil && !errors.Is(tc.err, tc.cause) {
			t.Errorf("%q does not match its cause %v", tc.err, tc.cause)
		}
		if errors.Is(tc.err, runtime.ErrConflict) {
			t.Errorf("%q matches ErrConflict", tc.err)
		}
	}
}
