package dockercompat

import (
	"errors"
	"net/http"

	"github.com/berthd/berth/runtime"
)

// statusOf maps an error to dockerd's status code and message.
func statusOf(err error) (int, string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.msg
	case errors.Is(err, runtime.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, runtime.ErrConflict):
		return http.StatusConflict, err.Error()
	case errors.Is(err, runtime.ErrInvalid), errors.Is(err, runtime.ErrCommandNotFound):
		return http.StatusBadRequest, err.Error()
	}
	return http.StatusInternalServerError, err.Error()
}

// noSuchContainer is dockerd's 404 for a container reference.
func noSuchContainer(ref string) error {
	return errorf(http.StatusNotFound, "No such container: %s", ref)
}

// containerErr turns a runtime lookup error for ref into dockerd's.
func containerErr(ref string, err error) error {
	if errors.Is(err, runtime.ErrNotFound) {
		return noSuchContainer(ref)
	}
	return err
}
