// Package runtime defines what berth needs from a container runtime: run,
// stop, remove, list and inspect containers, and a stream of lifecycle
// events each carrying a full container snapshot. Implementations live in
// sub-packages: runtime/embedded (berth's own Linux containers) and
// runtime/docker (a real Docker Engine).
//
// Events: the event channel returned by Runtime.Events is owned and closed
// by the implementation when the caller's context ends or the runtime is
// closed; the error channel receives at most one error (ErrSlowConsumer
// when the reader fell behind and events were dropped) and is closed with
// it.
package runtime
