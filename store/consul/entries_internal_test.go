package consul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/berthd/berth/store"
)

// entriesBodies are answers decodeEntries must read as encoding/json
// would: plain, spaced out, escaped, with fields berth does not use, and
// broken in every place.
var entriesBodies = []string{
	`[]`, ` [ ] `, "\n[\n]\n",
	`[{"LockIndex":0,"Key":"services/a/1","Flags":0,"Value":"eyJwb3J0Ijo4MH0=","CreateIndex":7,"ModifyIndex":9}]`,
	`[ {"Key" : "a" , "Value" : "eA==" , "ModifyIndex" : 1 } , {"Key":"b","ModifyIndex":2,"Session":"x\"y"} ]`,
	`[{"key":"a","value":"eA==","modifyindex":3}]`,
	`[{"K\u0065y":"a\u002fb","ModifyIndex":1}]`,
	`[{"Key":"a","ModifyIndex":1,"Extra":{"x":[1,{"y":"]}"}],"z":null}}]`,
	`[{"Key":"a","ModifyIndex":1,"Extra":[true,false,null,-1.5e3]}]`,
	`[{"Key":"a","Key":"b","ModifyIndex":1}]`,
	`[{"Key":"a","ModifyIndex":1,"ModifyIndex":2}]`,
	`[{"Key":"b","ModifyIndex":1},{"Key":"a","ModifyIndex":2}]`,
	`[{}]`, `[null]`, `[1]`, `[[]]`, `null`, `{}`, ``, `[`, `[{`, `[{"Key"`, `[{"Key":"a"`,
	`[{"Key":"a","ModifyIndex":1}`, `[{"Key":"a","ModifyIndex":1},]`, `[{"Key":"a","ModifyIndex":1}] x`,
	`[{"Key":"a","ModifyIndex":1}][]`, `[{"Key":"a" "ModifyIndex":1}]`, `[{"Key":"a","ModifyIndex":1}{}]`,
	`[{"Key":"a","ModifyIndex":01}]`, `[{"Key":"a","ModifyIndex":1.0}]`, `[{"Key":"a","ModifyIndex":1e2}]`,
	`[{"Key":"a","ModifyIndex":-1}]`, `[{"Key":"a","ModifyIndex":18446744073709551616}]`,
	`[{"Key":"a","ModifyIndex":tru}]`, `[{"Key":"a","ModifyIndex":1,"F":nul}]`, `[{"Key":"a","ModifyIndex":1,"F":+1}]`,
	`[{"Key":"a\q","ModifyIndex":1}]`, "[{\"Key\":\"a\x01\",\"ModifyIndex\":1}]", `[{"Key":12,"ModifyIndex":1}]`,
	`[{"Key":"a","ModifyIndex":1,"F":{"x":}}]`, `[{"Key":"a","ModifyIndex":1,"F":[1,]}]`, `[{1:2}]`, `[{"Key"::1}]`,
	`[{"Key":"a","Value":"eA\u003d=","ModifyIndex":1}]`, `[{"Key":"a","Value":"!!","ModifyIndex":1}]`,
	`[{"Key":"a","Value":12,"ModifyIndex":1}]`,
}

// referenceEntries decodes body as berth did before entryScanner: the
// whole answer by encoding/json into structs.
func referenceEntries(body []byte) ([]store.KV, error) {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return nil, fmt.Errorf("not a JSON array")
	}
	var entries []struct {
		Key         *string
		Value       json.RawMessage
		ModifyIndex *uint64
	}
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, err
	}
	var kvs []store.KV
	for i, e := range entries {
		if e.Key == nil || *e.Key == "" || e.ModifyIndex == nil {
			return nil, fmt.Errorf("entry %d: no key or index", i)
		}
		v, err := decodeValue(e.Value)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, store.KV{Key: "/" + *e.Key, Value: v, ModRevision: store.Revision(*e.ModifyIndex)})
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(kvs); i++ {
		if kvs[i-1].Key == kvs[i].Key {
			return nil, fmt.Errorf("listed twice")
		}
	}
	return kvs, nil
}

// TestDecodeEntriesMatchesEncodingJSON: decodeEntries reads every body as
// encoding/json does (the same KVs, an error exactly when it fails),
// whole or one byte at a time.
func TestDecodeEntriesMatchesEncodingJSON(t *testing.T) {
	for _, body := range entriesBodies {
		checkEntries(t, []byte(body))
	}
}

func FuzzDecodeEntries(f *testing.F) {
	for _, body := range entriesBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(checkEntries)
}

func checkEntries(t *testing.T, body []byte) {
	t.Helper()
	want, wantErr := referenceEntries(body)
	for _, r := range []io.Reader{bytes.NewReader(body), iotest.OneByteReader(bytes.NewReader(body))} {
		got, err := decodeEntries(r, nil)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%T: body %.200q: err = %v, encoding/json: %v", r, body, err, wantErr)
		}
		if err == nil && !sameKVs(got, want) {
			t.Fatalf("%T: body %.200q: got %v, encoding/json %v", r, body, got, want)
		}
	}
}

func sameKVs(a, b []store.KV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) || a[i].ModRevision != b[i].ModRevision {
			return false
		}
	}
	return true
}

// TestDecodeEntriesLarge: a 10,000-entry answer with a value larger than
// the scanner's buffer reads the same through a reader that answers in
// odd-sized pieces.
func TestDecodeEntriesLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	for i := range 10000 {
		if i > 0 {
			b.WriteString(",")
		}
		v := "eA=="
		if i == 5000 {
			v = strings.Repeat("QUJD", 30000) // 120 kB of base64
		}
		fmt.Fprintf(&b, `{"LockIndex":0,"Key":"s/%05d","Flags":0,"Value":%q,"CreateIndex":1,"ModifyIndex":%d}`, i, v, i+1)
	}
	b.WriteString("]")
	body := []byte(b.String())
	want, err := referenceEntries(body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEntries(iotest.HalfReader(bytes.NewReader(body)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKVs(got, want) {
		t.Fatal("decodeEntries differs from encoding/json on a large answer")
	}
}
