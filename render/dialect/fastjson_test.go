package dialect

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// jsonCases are texts decodeJSON must decode exactly as encoding/json:
// the fast subset, and every way out of it (escapes, control bytes,
// invalid UTF-8, bad numbers, deep nesting, trailing data, bad syntax).
var jsonCases = []string{
	`{"host":"127.0.0.1","port":8080}`,
	` { "host" : "a" , "port" : 1 } `,
	"{\n\t\"a\":\r\n[1, 2.5, -0, -1e3, 1E+2, 0.25e-2]}",
	`{}`, `[]`, `[{}]`, `{"a":{"b":{"c":[true,false,null]}}}`,
	`"plain"`, `"héllo wörld"`, `12`, `-0.0`, `true`, `false`, `null`,
	`{"a":1,"a":2}`,                  // repeated name: the last wins
	`{"s":"tab\there"}`,              // escape: encoding/json
	`{"s":"\u00e9\ud83d\ude00"}`,     // unicode escapes
	"{\"s\":\"ctl\x01\"}",            // control byte: an error
	"{\"s\":\"bad\xff\xfeutf8\"}",    // invalid UTF-8: replaced by U+FFFD
	`1e400`, `-1e400`, `{"n":1e999}`, // out of range: an error
	`01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `Infinity`, `NaN`,
	``, ` `, `{`, `}`, `[`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`, `{'a':1}`,
	`{"a":1} x`, `{"a":1}{}`, `truex`, `nul`, `[1 2]`, `{"a":1 "b":2}`,
	strings.Repeat("[", 40) + strings.Repeat("]", 40), // deeper than the fast subset
	strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40),
	strings.Repeat("[", 20000) + strings.Repeat("]", 20000), // beyond encoding/json's limit
}

func TestDecodeJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonCases {
		checkDecodeJSON(t, s)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range jsonCases {
		f.Add(s)
	}
	f.Fuzz(checkDecodeJSON)
}

// checkDecodeJSON checks decodeJSON(s) against encoding/json: the same
// value, and an error exactly when encoding/json fails, with its text;
// and confd's json and jsonArray against encoding/json into a map and a
// list (with no value when it fails).
func checkDecodeJSON(t *testing.T, s string) {
	t.Helper()
	var want any
	wantErr := json.Unmarshal([]byte(s), &want)
	got, err := decodeJSON(s)
	if !sameErr(err, wantErr) || !reflect.DeepEqual(got, want) {
		t.Errorf("decodeJSON(%.80q) = %#v, %v; encoding/json: %#v, %v", s, got, err, want, wantErr)
	}
	var wantObj map[string]any
	if wantErr = json.Unmarshal([]byte(s), &wantObj); wantErr != nil {
		wantObj = nil // confd's json gives no value with its error
	}
	gotObj, err := jsonObject(s)
	if !sameErr(err, wantErr) || !reflect.DeepEqual(gotObj, wantObj) {
		t.Errorf("jsonObject(%.80q) = %#v, %v; encoding/json: %#v, %v", s, gotObj, err, wantObj, wantErr)
	}
	var wantList []any
	if wantErr = json.Unmarshal([]byte(s), &wantList); wantErr != nil {
		wantList = nil
	}
	gotList, err := jsonArray(s)
	if !sameErr(err, wantErr) || !reflect.DeepEqual(gotList, wantList) {
		t.Errorf("jsonArray(%.80q) = %#v, %v; encoding/json: %#v, %v", s, gotList, err, wantList, wantErr)
	}
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// BenchmarkDecodeJSON decodes a peer-workload value, by decodeJSON and by
// encoding/json.
func BenchmarkDecodeJSON(b *testing.B) {
	const s = `{"host":"127.0.3.7","port":8080}`
	b.Run("decodeJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJSON(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
