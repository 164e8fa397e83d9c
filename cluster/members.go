package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MemberInfo is one member as berth cluster ls shows it.
type MemberInfo struct {
	ID      uint64 `json:"id"`
	Name    string `json:"name"`     // "" until the member has started
	PeerURL string `json:"peer_url"` // the first peer URL
	Started bool   `json:"started"`
	Learner bool   `json:"learner"`
	Leader  bool   `json:"leader"`
	Self    bool   `json:"self"` // the member this client talks to
}

func infoOf(m *etcdserverpb.Member) MemberInfo {
	mi := MemberInfo{ID: m.ID, Name: m.Name, Started: m.Name != "", Learner: m.IsLearner}
	if len(m.PeerURLs) > 0 {
		mi.PeerURL = m.PeerURLs[0]
	}
	return mi
}

// ErrLastMember reports an attempt to remove the only member.
var ErrLastMember = errors.New("the last member cannot be removed")

// ErrNoMember reports a member name that is not in the cluster.
var ErrNoMember = errors.New("no such member")

// List returns the members, the leader and this client's member marked.
func List(ctx context.Context, cli *clientv3.Client) ([]MemberInfo, error) {
	// Serializable: the member's own view, even without a quorum.
	resp, err := cli.MemberList(ctx, clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	var leader, self uint64
	for _, ep := range cli.Endpoints() {
		if st, err := cli.Status(ctx, ep); err == nil {
			leader, self = st.Leader, st.Header.MemberId
			break
		}
	}
	out := make([]MemberInfo, 0, len(resp.Members))
	for _, m := range resp.Members {
		mi := infoOf(m)
		mi.Leader, mi.Self = m.ID == leader, m.ID == self
		out = append(out, mi)
	}
	return out, nil
}

// Add adds a member at peerURL (https://IP:2381) ahead of its start (the
// host then joins with berth up --join, which finds it added). It is
// etcd's member add: until the new member starts, it counts towards the
// quorum.
func Add(ctx context.Context, cli *clientv3.Client, peerURL string) (MemberInfo, error) {
	u, err := url.Parse(peerURL)
	if err != nil || u.Scheme != "https" || u.Port() == "" {
		return MemberInfo{}, fmt.Errorf("peer URL %q: want https://IP:PORT", peerURL)
	}
	resp, err := cli.MemberAdd(ctx, []string{peerURL})
	if err != nil {
		return MemberInfo{}, fmt.Errorf("add member at %s: %w%s", peerURL, err, unhealthyHint(err))
	}
	return infoOf(resp.Member), nil
}

// Remove removes the member named name (or, for one not started yet,
// whose peer URL is name). Removing the last member is refused.
func Remove(ctx context.Context, cli *clientv3.Client, name string) (MemberInfo, error) {
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return MemberInfo{}, fmt.Errorf("list members: %w", err)
	}
	for _, m := range resp.Members {
		mi := infoOf(m)
		if mi.Name != name && !(mi.Name == "" && mi.PeerURL == name) {
			continue
		}
		if len(resp.Members) == 1 {
			return MemberInfo{}, fmt.Errorf("%w (%s): stop its daemon instead", ErrLastMember, name)
		}
		if _, err := cli.MemberRemove(ctx, m.ID); err != nil {
			return MemberInfo{}, fmt.Errorf("remove member %s: %w%s", name, err, unhealthyHint(err))
		}
		return mi, nil
	}
	return MemberInfo{}, fmt.Errorf("%w: %q", ErrNoMember, name)
}

// unhealthyHint explains etcd's refusal to change the membership of an
// unhealthy cluster (strict reconfiguration check).
func unhealthyHint(err error) string {
	if errors.Is(err, rpctypes.ErrUnhealthy) || strings.Contains(err.Error(), rpctypes.ErrUnhealthy.Error()) {
		return " (etcd changes the membership only while every member it counts on is up and has been for 5 s: try again shortly, or remove the dead member first)"
	}
	return ""
}
