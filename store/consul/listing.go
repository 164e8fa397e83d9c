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
	"unicode/utf8"

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
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNotFound: // 404: nothing under prefix
	default:
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		if err != nil {
			return nil, 0, fmt.Errorf("reading the answer: %w", err)
		}
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
		if kvs, err = decodeEntries(resp.Body, base); err != nil {
			return nil, 0, fmt.Errorf("answer: %w", err)
		}
	}
	// Drain what is left (nothing, from Consul) so that the connection is
	// reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	// Consul documents index 0 as possible on an empty store; treat it as 1
	// so that it is never mistaken for "now".
	return kvs, store.Revision(max(index, 1)), nil
}

// maxErrorBody bounds what is read of an error answer's body.
const maxErrorBody = 64 << 10

// decodeEntries decodes Consul's JSON array of KV entries into KVs sorted
// by key, reusing base's KV for every entry whose key and ModifyIndex are
// unchanged. It reads the answer one entry at a time (entryScanner): at
// 10,000 keys the answer is 2.3 MB of JSON, which is never held whole
// (issue #14: the answer and its decoded copy were most of the watch's
// peak memory).
func decodeEntries(r io.Reader, base []store.KV) ([]store.KV, error) {
	sc := newEntryScanner(r)
	kvs := make([]store.KV, 0, len(base))
	sorted := true
	j := 0 // base is sorted, and so is Consul's answer
	for i := 0; ; i++ {
		e, ok, err := sc.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		key, err := entryKey(e.Key)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if len(key) == 0 {
			return nil, fmt.Errorf("entry %d: no Key", i)
		}
		if len(e.ModifyIndex) == 0 || string(e.ModifyIndex) == "null" {
			return nil, fmt.Errorf("entry %d (key %q): no ModifyIndex", i, key)
		}
		mod, err := strconv.ParseUint(string(e.ModifyIndex), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("entry %d (key %q): ModifyIndex %.40q: not an index", i, key, e.ModifyIndex)
		}
		for j < len(base) && base[j].Key[1:] < string(key) {
			j++
		}
		var kv store.KV
		if j < len(base) && base[j].Key[1:] == string(key) && uint64(base[j].ModRevision) == mod {
			kv = base[j]
		} else {
			value, err := decodeValue(e.Value)
			if err != nil {
				return nil, fmt.Errorf("entry %d (key %q): Value: %w", i, key, err)
			}
			kv = store.KV{Key: "/" + string(key), Value: value, ModRevision: store.Revision(mod)}
		}
		if n := len(kvs); n > 0 && kvs[n-1].Key >= kv.Key {
			sorted = false
		}
		kvs = append(kvs, kv)
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

// entryKey returns an entry's Key, a JSON string (empty when absent or
// null). A string with no escapes and valid UTF-8 is its bytes between
// the quotes (no copy); any other goes through encoding/json.
func entryKey(raw []byte) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		in := raw[1 : len(raw)-1]
		if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
			return in, nil
		}
	}
	var k string
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("Key %.40q: not a string", raw)
	}
	return []byte(k), nil
}

// decodeValue decodes an entry's Value: null (or absent) is an empty value,
// else a base64 JSON string.
func decodeValue(raw []byte) ([]byte, error) {
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
