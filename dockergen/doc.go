// Package dockergen is berth's docker-gen mode: docker-gen's templates and
// configurations rendered from a real Docker Engine, without docker-gen's
// weak spots. It has no loop of its own: it is the runner (package runner)
// fed by a Source, a Docker Engine's containers as one container filter
// shows them (listed once, then followed through runtime/docker: one
// inspection per event, reconnection with resync). Each configuration is
// rendered through berth's pipeline (check, atomic swap, notify as the
// reload command, rollback) and debounced with its wait; only a change of
// the containers a template sees arms its wait. A template or notify error
// is logged and retried with the runner's backoff, never fatal in watch
// mode.
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
