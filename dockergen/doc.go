// Package dockergen is berth's docker-gen mode: docker-gen's templates and
// configurations rendered from a real Docker Engine, without docker-gen's
// weak spots. Containers are followed through runtime/docker (one
// inspection per event, reconnection with resync); each configuration is
// rendered through berth's pipeline (check, atomic swap, notify as the
// reload command, rollback) and debounced with its wait; a template or
// notify error is logged and retried, never fatal in watch mode.
package dockergen
