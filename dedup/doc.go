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
//     after the key was made is refused until a reload (the runner
//     re-keys a template whose sources changed) or restart re-keys it;
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
//
// Peer to peer (WithPeers, served by Deduper.Run): a leader serves its
// current output (gzipped, with its hash, count and data revision) at
// GET /dedup/<id>/output?have=<hash>&host=<follower>, a long poll that
// answers when its hash differs from have (304 after 30 s), over TLS 1.3
// with a self-signed ECDSA P-256 certificate made in memory, to a bearer
// secret of 32 random bytes compared in constant time. Its URL, the
// certificate's SHA-256 fingerprint and the secret are in its lock
// record. A follower that sees them registers once under
// <prefix><id>/followers/<owner> (bound to its lease), pins the
// fingerprint (the chain is not verified, the pin is), bounds the body,
// checks the output as one from the store (unzip: size bound, gzip,
// hash) and follows each new one; the leader records which hash each
// follower fetched, and stores an output only for registered followers
// that did not fetch it within a grace (WithPeerGrace, 1 s). So a change costs the
// store only the leader's data watch, however many follow. A follower
// that cannot reach the leader says so once and takes the stored output
// meanwhile; outputs of one leader are taken in the order of their data
// revisions, whichever way each arrives, so a late stored one never
// replaces a newer fetched one. Its security is the store's: who can
// read the lock record can read the data the output is made from.
package dedup
