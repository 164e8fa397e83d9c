package store

import (
	"context"
	"errors"
	"time"
)

// Revision is a store-wide, monotonically increasing version number. Every
// successful write produces a new revision; a List is consistent at one
// revision, and Watch resumes after one. Revision 0 means "none" or "now".
type Revision int64

// KV is one key with its value and the revision that last modified it.
type KV struct {
	Key         string
	Value       []byte
	ModRevision Revision
}

// EventType says what happened to a key.
type EventType uint8

const (
	// EventPut means the key was created or its value replaced.
	EventPut EventType = iota + 1
	// EventDelete means the key was removed (explicitly or by TTL expiry).
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change to one key. For EventDelete, KV.Value is nil and
// KV.ModRevision is the revision of the deletion.
type Event struct {
	Type EventType
	KV   KV
}

// WatchResponse carries the events of one or more revisions, in revision
// order. A response with no events and no error is a progress notification:
// the watched prefix is current up to Revision.
//
// Err is set only on the last response before the channel is closed:
// errors.Is(Err, ErrCompacted) means the history after the requested
// revision is gone and the caller must List again; ErrClosed means the store
// was closed; anything else means the watch broke (re-list and watch again).
type WatchResponse struct {
	Revision Revision
	Events   []Event
	Err      error
}

// Store is berth's key/value contract, implemented by every backend.
//
// Keys are directory-style paths ("/berth/services/web/host1/abc"). A prefix
// matches every key that starts with it byte for byte, so callers watching a
// "directory" pass it with a trailing slash.
//
// All methods are safe for concurrent use. Every call takes a context; a
// context that ends makes the call return its error.
type Store interface {
	// Get returns one key. A missing key is ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)

	// List returns every key under prefix, sorted by key, together with the
	// revision at which the listing is consistent. Watching from that
	// revision misses nothing.
	List(ctx context.Context, prefix string) ([]KV, Revision, error)

	// Put writes one key. WithTTL binds it to the store's lease for that
	// TTL: the key disappears when the owning process stops renewing it.
	Put(ctx context.Context, key string, value []byte, opts ...PutOption) (Revision, error)

	// Delete removes a key, or with WithPrefix every key under it. Deleting
	// what does not exist is not an error.
	Delete(ctx context.Context, key string, opts ...DeleteOption) (Revision, error)

	// Txn applies every operation or none, at one revision. An operation
	// built with Create (Op.Create) writes its key only if the key does not
	// exist: if it does, Txn applies nothing and fails with an error
	// wrapping ErrExists. Of two concurrent creates of one key, from any
	// clients, exactly one succeeds.
	Txn(ctx context.Context, ops ...Op) (Revision, error)

	// Watch streams the changes under prefix that happen after revision
	// after (0: from now). It delivers every change in revision order and
	// misses none; a backend without full history (Consul, file) may fold
	// several changes of one key between two responses into the last one.
	// The channel is closed when ctx ends (without a final error), or after
	// a final response whose Err is set.
	Watch(ctx context.Context, prefix string, after Revision) <-chan WatchResponse

	// Close releases the store. TTL keys it owns stop being renewed and are
	// revoked where the backend allows it. Calls after Close fail with
	// ErrClosed.
	Close() error
}

// Detacher is implemented by stores whose TTL keys can be left to expire on
// their own. Detach closes the store like Close but does not revoke its
// leases or sessions: its TTL keys live until their TTL runs out. A
// command-line "put with a TTL" uses it.
type Detacher interface {
	Detach() error
}

// Sentinel errors. Backends wrap them with context (%w), so test with
// errors.Is.
var (
	ErrNotFound    = errors.New("key not found")
	ErrCompacted   = errors.New("revision compacted: history no longer available")
	ErrClosed      = errors.New("store closed")
	ErrReadOnly    = errors.New("store is read-only")
	ErrUnavailable = errors.New("store unavailable")
	ErrExists      = errors.New("key exists")
)

// OpType is the kind of one transaction operation.
type OpType uint8

const (
	// OpPut writes a key.
	OpPut OpType = iota + 1
	// OpDelete removes a key or a prefix.
	OpDelete
)

// Op is one operation of a transaction. Build it with Put or Delete.
type Op struct {
	Type   OpType
	Key    string
	Value  []byte
	TTL    time.Duration // OpPut: bind to the store's lease for this TTL (0: none)
	Prefix bool          // OpDelete: remove every key under Key
	Create bool          // OpPut: only if Key does not exist (else the txn fails with ErrExists)
}

// Put returns a transaction operation that writes key.
func Put(key string, value []byte, opts ...PutOption) Op {
	o := PutOptionsOf(opts...)
	return Op{Type: OpPut, Key: key, Value: value, TTL: o.TTL}
}

// Create returns a transaction operation that writes key only if it does
// not exist (compare-and-create): the transaction fails with an error
// wrapping ErrExists, and applies nothing, when it does. A lock is a
// Create with a TTL: whoever created it holds it, and it goes with its
// holder's lease. Unlike a TTL put, a created key is not written again
// when the store re-establishes a lost lease or session: a lock that
// expired may be another's by then.
func Create(key string, value []byte, opts ...PutOption) Op {
	op := Put(key, value, opts...)
	op.Create = true
	return op
}

// Delete returns a transaction operation that removes key (or a prefix).
func Delete(key string, opts ...DeleteOption) Op {
	o := DeleteOptionsOf(opts...)
	return Op{Type: OpDelete, Key: key, Prefix: o.Prefix}
}

// PutOptions are the resolved options of a Put.
type PutOptions struct {
	TTL time.Duration
}

// PutOption configures a Put.
type PutOption func(*PutOptions)

// WithTTL makes the key live only as long as its owner keeps the store open
// (plus at most ttl after the owner dies). Backends round ttl up to their
// minimum (etcd: 2s, Consul: 10s).
func WithTTL(ttl time.Duration) PutOption {
	return func(o *PutOptions) { o.TTL = ttl }
}

// PutOptionsOf resolves options; for backends.
func PutOptionsOf(opts ...PutOption) PutOptions {
	var o PutOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// DeleteOptions are the resolved options of a Delete.
type DeleteOptions struct {
	Prefix bool
}

// DeleteOption configures a Delete.
type DeleteOption func(*DeleteOptions)

// WithPrefix deletes every key that starts with the given key.
func WithPrefix() DeleteOption {
	return func(o *DeleteOptions) { o.Prefix = true }
}

// DeleteOptionsOf resolves options; for backends.
func DeleteOptionsOf(opts ...DeleteOption) DeleteOptions {
	var o DeleteOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}
