// Package docker is the runtime.Runtime that follows a real Docker Engine:
// it lists and inspects containers once, then follows /events, inspecting
// only the container an event names (an in-memory cache spares docker-gen's
// list-and-inspect-everything per event). When the event stream breaks it
// reconnects with backoff, asks for the events since the last one seen, and
// resynchronises from a full listing, so no container is missed.
//
// Channels: Events' event channel is closed by the Runtime when the
// caller's context ends; its error channel is closed with it and never
// carries an error (a broken stream is retried, not reported as final).
package docker
