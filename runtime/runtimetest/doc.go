// Package runtimetest is a scripted runtime.Runtime for fast tests of the
// code that follows a runtime (the registrar, the runner, the daemon): no
// processes, no images, no root. A test creates containers with Run or Add,
// drives them with Start, Stop, Kill, Exit, SetHealth and Remove, and reads
// the same lifecycle events, in the same order and form, as the real Docker
// Engine's runtime (runtime/docker) emits:
//
//	Run            create, update (network connect), start
//	Stop           kill (stop signal), [kill SIGKILL if ignored], die, update (disconnect), stop
//	Kill SIGKILL   kill, die, update
//	Remove, Force  kill SIGKILL, die, update, destroy (a running container)
//	Exit           die, update
//
// A network update is emitted only for containers on a network (not host
// or none). runtime/embedded emits no network update events and no kill
// before a forced remove; a test that depends on that difference uses the
// real runtime. TestDoubleMatchesDocker runs one scenario against the
// double and the real engine and compares the sequences, so the double
// cannot drift from it. Restart policies are not applied.
//
// Failures are injected per operation with Fail; EndEvents ends the
// current event streams with an error, as a lost engine connection does.
//
// Concurrency: a Runtime is safe for concurrent use. Each Events
// subscription has an unbounded queue, so scripting never blocks on a slow
// reader; its channels are closed when ctx ends (no error), at EndEvents
// (after the error) or at Close.
package runtimetest
