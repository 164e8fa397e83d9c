package consul

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/store"
)

// getPrefix reads every key under prefix with Consul's HTTP API
// (GET /v1/kv/<prefix>?recurse), blocking while the prefix's index is
// wait when wait > 0, and returns the keys sorted and the prefix's index.
//
// It is berth's own GET, not the client library's: an entry whose key and
// ModifyIndex are those of an entry of base (the previous state, sorted)
// keeps base's KV, so its value is not decoded again (Consul gives every
// write a new ModifyIndex). Only changed entries cost a value decode.
// An answer that is not what Consul sends (not a JSON array of entries, an
// entry without a key or index, a value that is not base64) is an error
// naming what is wrong; the caller keeps its last good state.
func (s *Store) getPrefix(ctx context.Context, prefix string, wait uint64, waitTime time.Duration, consistent bool, base []store.KV) ([]store.KV, store.Revision, error) {
	v := url.Values{"recurse": {""}}
	for name, vals := range s.scope {
		v[name] = vals
	}
	if wait > 0 {
		v.Set("index", strconv.FormatUint(wait, 10))
		v.Set("wait", strconv.FormatInt(waitTime.Milliseconds(), 10)+"ms")
	}
	if consistent {
		v.Set("consistent", "")
	}
	u := s.endpoint + "/v1/kv/" + (&url.URL{Path: consulKey(prefix)}).EscapedPath() + "?" + v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	if s.token != "" {
		req.Header.Set("X-Consul-Token", s.token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNotFound: // 404: nothing under prefix
	default:
		// The client library's error, which isPermission and isTransient
		// know.
		return nil, 0, api.StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	if resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true" {
		// A listing with holes would look like deleted keys downstream.
		return nil, 0, fmt.Errorf("%w: the token may not read some keys under this prefix (key:read)", ErrPermissionDenied)
	}
	idx := resp.Header.Get("X-Consul-Index")
	index, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("answer: header X-Consul-Index %q: not an index", idx)
	}
	var kvs []store.KV
	if resp.StatusCode == http.StatusOK {
		if kvs, err = decodeEntries(body, base); err != nil {
			return nil, 0, fmt.Errorf("answer: %w", err)
		}
	}
	// Consul documents index 0 as possible on an empty store; treat it as 1
	// so that it is never mistaken for "now".
	return kvs, store.Revision(max(index, 1)), nil
}

// entry is one KV entry of Consul's answer; Value stays undecoded until it
// is needed.
type entry struct {
	Key         *string
	Value       json.RawMessage
	ModifyIndex *uint64
}

// decodeEntries decodes Consul's JSON array of KV entries into KVs sorted by
// key, reusing base's KV for every entry whose key and ModifyIndex are
// unchanged.
func decodeEntries(body []byte, base []store.KV) ([]store.KV, error) {
	var entries []entry
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, fmt.Errorf("not a JSON array of KV entries: %w", err)
	}
	kvs := make([]store.KV, len(entries))
	sorted := true
	j := 0 // base is sorted, and so is Consul's answer
	for i, e := range entries {
		if e.Key == nil || *e.Key == "" {
			return nil, fmt.Errorf("entry %d: no Key", i)
		}
		if e.ModifyIndex == nil {
			return nil, fmt.Errorf("entry %d (key %q): no ModifyIndex", i, *e.Key)
		}
		key := *e.Key
		for j < len(base) && base[j].Key[1:] < key {
			j++
		}
		if j < len(base) && base[j].Key[1:] == key && uint64(base[j].ModRevision) == *e.ModifyIndex {
			kvs[i] = base[j]
		} else {
			value, err := decodeValue(e.Value)
			if err != nil {
				return nil, fmt.Errorf("entry %d (key %q): Value: %w", i, key, err)
			}
			kvs[i] = store.KV{Key: berthKey(key), Value: value, ModRevision: store.Revision(*e.ModifyIndex)}
		}
		if i > 0 && kvs[i-1].Key >= kvs[i].Key {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
		for i := 1; i < len(kvs); i++ {
			if kvs[i-1].Key == kvs[i].Key {
				return nil, fmt.Errorf("key %q: listed twice", kvs[i].Key[1:])
			}
		}
	}
	return kvs, nil
}

// decodeValue decodes an entry's Value: null (or absent) is an empty value,
// else a base64 JSON string.
func decodeValue(raw json.RawMessage) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || bytes.IndexByte(raw[1:len(raw)-1], '\\') >= 0 {
		return nil, fmt.Errorf("not a base64 string: %.40q", raw)
	}
	enc := raw[1 : len(raw)-1]
	out := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(out, enc)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return out[:n:n], nil
}
