// Package cluster makes berth daemons on several hosts one etcd cluster:
// each daemon's embedded store (store/etcd) becomes a member through
// etcd's own membership API.
//
// # Forming a cluster
//
// Init prepares the first member (berth up --cluster-init): a cluster CA
// in the store's tls directory, this member's peer certificate for its
// advertise address, and a join token. Join prepares every other member
// (berth up --join https://FIRST:2380 --token T): it asks a member's join
// service to admit it, and the embedded store then starts as a member of
// the existing cluster. A restarted member needs neither flag: its store
// directory knows its place (cluster.json).
//
// # The join token and its service
//
// A token is "berth1.<pin>.<secret>": pin is the SHA-256 of the cluster
// CA certificate, secret 32 random bytes (both hex). Every member serves
// the join service on its advertise address (port DefaultPort, 2380; the
// etcd peer port is the next one, 2381) over TLS with its peer
// certificate, the CA in the chain. The joiner trusts the service only if
// the chain holds the CA the pin names (a wrong CA: a refusal before the
// secret is sent), then proves the secret (a bearer secret over that
// authenticated channel, compared in constant time: a wrong token is
// refused with 403). The service then adds the joiner as a learner
// (MemberAddAsLearner: it does not count towards the quorum while it
// starts, so a one-member cluster stays available, and a joiner that never
// starts costs nothing; every member's join service promotes learners
// once they have caught up, and the joiner's store serves its clients only
// then), signs
// a peer certificate for the joiner's public key and address, and answers
// with the initial cluster, the CA (certificate and key: any member can
// admit the next one) and the token. Whoever holds the token can join the
// cluster, and so read and write every host's records: keep it as secret
// as the store's credentials (it is kept mode 0600 in the store's tls
// directory; berth cluster token prints it).
//
// Names are unique: a joiner whose name is a member's at another address
// is refused. A joiner with the same name and address is the same host:
// with its data it simply restarts; without data (lost, or removed from
// the cluster) its old member is replaced. A removed member's old data is
// moved aside (data.<time>) when it joins again.
//
// # Clients beyond MaxVoters
//
// A cluster gets at most MaxVoters (5) voting members. A host that joins a
// cluster with as many becomes its client: the join service answers with
// the members' client URLs (port ClientPort, 2379, on their advertise
// addresses), the CA certificate (not its key) and a client certificate;
// the host's store directory then holds remote.json instead of a member,
// and its daemon and commands use the members' stores.
package cluster
