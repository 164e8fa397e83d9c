// Package dedup shares one template's render among the daemons that
// render it from the same prefixes (consul-template's dedup mode, done
// with an etcd lease): per template identity, one daemon — the one that
// created the lock key <prefix><id>/leader, bound to its store lease —
// mirrors the data prefixes, executes the template and stores what it
// applied, gzipped with its content hash, under <prefix><id>/output. The
// others read only that key and write its output through their own
// render pipeline (check, atomic swap, reload, guards, quarantine): only
// the execution of the template and the reads of its data prefix are
// shared.
//
// It plugs into the runner as a runner.Source (one per identity, keyed
// Key(t)) that is also a runner.Binder. Its rules, against the known
// dedup bugs:
//   - the identity (Identity) hashes the template's text, its includes'
//     names and text, its parse options and prefixes: two hosts with
//     different templates never share an output, and an edit on disk
//     after the key was made is refused until a restart re-keys it;
//   - no stale lock: the lock lives with its holder's lease (a dead
//     holder's goes within the TTL) and is deleted by a holder that stops;
//   - no render loop: the leader's data never includes the dedup keys
//     (a prefix that covers them, such as "/berth/", is mirrored without
//     them; a change of them alone is no change), it stores an output only
//     when its hash differs from the stored one, and a follower never
//     writes (nor does it re-render for an output whose hash it has);
//   - no lost update on handover: a new leader lists the data prefixes
//     when it takes the lock and renders from them at once;
//   - a stale leader's late write is ignored: followers take an output
//     only from the current lock holder, and that holder stores its own
//     again over any other's.
//
// A dedup template must not render host-specific data (env, hostname):
// the leader's is everyone's.
package dedup
