// Package dockergen is berth's docker-gen mode: docker-gen's templates and
// configurations rendered from a real Docker Engine, without docker-gen's
// weak spots. Containers are followed through runtime/docker (one
// inspection per event, reconnection with resync); each configuration is
// rendered through berth's pipeline (check, atomic swap, notify as the
// reload command, rollback) and debounced with its wait; a template or
// notify error is logged and retried, never fatal in watch mode.
//
// After a render that changed its destination (or at every interval), a
// configuration signals the containers it names (docker-gen's
// NotifyContainers: -1 restarts) and the running containers its notify
// filter selects, through Docker's kill endpoint; the filter is applied to
// the containers followed, so it costs no listing. A regeneration (SIGHUP)
// parses the templates again first, which docker-gen does not.
//
// The template context is docker-gen's, field for field: the legacy
// .IP/.Gateway/.Addresses[].IP describe the default bridge network only,
// .Addresses has one entry per port, an environment entry without "=" is
// an empty key, and $.Docker.CurrentContainerID is found as docker-gen
// finds it (internal/selfid).
package dockergen
