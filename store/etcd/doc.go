// Package etcd is the store.Store backend on etcd v3: New connects to an
// etcd cluster (TLS, username/password), Embedded runs berth's default
// store — an in-process etcd server on 127.0.0.1 under a directory — or
// joins the process already serving that directory.
//
// # The embedded store's trust model
//
// The store is the routing table, so the embedded server accepts only
// clients that hold the directory's credentials. At its first start the
// serving process generates, into Dir/tls (mode 0700), a CA, a server
// certificate for 127.0.0.1/localhost (also its peer certificate) and one
// client certificate, and reuses them afterwards (a missing, mismatched or
// expiring certificate is replaced; keys are mode 0600 and written
// atomically). The server speaks TLS only, on its client and peer ports,
// and requires a client certificate signed by that CA: a plain connection,
// or TLS without the certificate, is refused. Whoever can read
// Dir/tls/client.key can read and write the store: root, for berth's state
// directory, and optionally one group (EmbeddedConfig.Group: Dir and
// Dir/tls 0750, the client certificate and key 0640; the data and the CA
// and server keys stay private).
//
// # Clusters of embedded stores
//
// A directory with a cluster.json (Member, written by package cluster) is
// served as one member of a cluster: named for its host, listening for
// peers on its advertise address, with peer TLS from a cluster CA of its
// own (Dir/tls/cluster-ca.crt, peer.crt; peers must present a certificate
// of that CA). A member also serves the cluster's clients on its
// advertise address (Member.ClientURL): the cluster CA is then its local CA
// too. A store that served alone before keeps its data and becomes the
// first member (its peer URL is updated). A directory with a remote.json
// (Remote) is a client of a cluster on other hosts: Embedded connects to
// its endpoints and serves nothing.
// etcdctl, as root:
//
//	etcdctl --endpoints "$(cat /var/lib/berth/store/endpoint)" \
//	  --cacert /var/lib/berth/store/tls/ca.crt \
//	  --cert /var/lib/berth/store/tls/client.crt --key /var/lib/berth/store/tls/client.key get --prefix /berth/
//
// # A stable address
//
// Dir/endpoint records the client URL. It outlives the server: the next
// server listens on the same port, so clients that joined (a sidecar's
// watches) reconnect on their own after a restart and resume from their
// revision. A port taken by another program in the meantime is an error
// naming the file. Dir/lock is held (flock) by the serving process: others
// join it, or with JoinOnly refuse to serve themselves (so a short-lived
// command never becomes the server a daemon joins).
//
// TTL keys are bound to one lease per TTL, kept alive in the background; if
// a lease is lost (the cluster was unreachable for longer than the TTL) the
// store grants a new one and writes its keys again. Watch channels are
// closed by the store: after a final response with Err set, or when the
// caller's context ends. While the connection to the cluster is lost,
// watches stay open (the client reconnects at least every two seconds)
// and the store logs the loss and the return.
package etcd
