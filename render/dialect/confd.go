package dialect

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// confdFuncs is confd's function set: its helpers and memkv's key
// functions over the snapshot, keys relative to the resource prefix.
func confdFuncs() *funcSet {
	m := template.FuncMap{
		"base":           path.Base,
		"split":          strings.Split,
		"json":           jsonObject,
		"jsonArray":      jsonArray,
		"dir":            path.Dir,
		"map":            createMap,
		"join":           strings.Join,
		"datetime":       time.Now,
		"toUpper":        strings.ToUpper,
		"toLower":        strings.ToLower,
		"contains":       strings.Contains,
		"replace":        strings.Replace,
		"trimSuffix":     strings.TrimSuffix,
		"lookupIP":       lookupIP,
		"lookupIPV4":     lookupIPV4,
		"lookupIPV6":     lookupIPV6,
		"lookupSRV":      lookupSRV,
		"fileExists":     fileExists,
		"base64Encode":   base64Encode,
		"base64Decode":   base64Decode,
		"parseBool":      strconv.ParseBool,
		"reverse":        reverse,
		"sortByLength":   sortByLength,
		"sortKVByLength": sortKVByLength,
		"add":            func(a, b int) int { return a + b },
		"sub":            func(a, b int) int { return a - b },
		"div":            func(a, b int) int { return a / b },
		"mod":            func(a, b int) int { return a % b },
		"mul":            func(a, b int) int { return a * b },
		"seq":            seq,
		"atoi":           strconv.Atoi,
	}
	return &funcSet{parse: m, bind: func(x *execution) template.FuncMap {
		b := template.FuncMap{
			"get":    kvFunc(x, func(s *kvStore) any { return s.get }),
			"gets":   kvFunc(x, func(s *kvStore) any { return s.gets }),
			"getv":   kvFunc(x, func(s *kvStore) any { return s.getv }),
			"getvs":  kvFunc(x, func(s *kvStore) any { return s.getvs }),
			"ls":     kvFunc(x, func(s *kvStore) any { return s.ls }),
			"lsdir":  kvFunc(x, func(s *kvStore) any { return s.lsdir }),
			"exists": kvFunc(x, func(s *kvStore) any { return s.exists }),
			"getenv": unbound,
		}
		if x != nil {
			b["json"], b["jsonArray"] = x.memo.jsonObject, x.memo.jsonArray
			b["getenv"] = func(key string, def ...string) string {
				if v := x.getenv(key); v != "" || len(def) == 0 {
					return v
				}
				return def[0]
			}
		}
		return b
	}}
}

// createMap builds a map from key, value pairs: confd's map.
func createMap(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("invalid map call")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			return nil, errors.New("map keys must be strings")
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// jsonObject decodes a JSON object.
func jsonObject(s string) (map[string]any, error) {
	if v, err := decodeJSON(s); err == nil {
		switch v := v.(type) {
		case map[string]any:
			return v, nil
		case nil: // null leaves the map nil
			return nil, nil
		}
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return v, nil
}

// jsonArray decodes a JSON array.
func jsonArray(s string) ([]any, error) {
	if v, err := decodeJSON(s); err == nil {
		switch v := v.(type) {
		case []any:
			return v, nil
		case nil: // null leaves the list nil
			return nil, nil
		}
	}
	var v []any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	return v, nil
}

// lookupIP resolves a name to its addresses, sorted (so that the order of
// DNS answers does not change the output); none when it fails.
func lookupIP(name string) []string {
	ips, err := net.LookupIP(name)
	if err != nil {
		return nil
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	slices.Sort(out)
	return out
}

// lookupIPFamily returns the addresses of lookupIP that contain sep ("."
// for IPv4, ":" for IPv6).
func lookupIPFamily(name, sep string) []string {
	var out []string
	for _, ip := range lookupIP(name) {
		if strings.Contains(ip, sep) {
			out = append(out, ip)
		}
	}
	return out
}

// lookupIPV4 is lookupIP's IPv4 addresses.
func lookupIPV4(name string) []string { return lookupIPFamily(name, ".") }

// lookupIPV6 is lookupIP's IPv6 addresses.
func lookupIPV6(name string) []string { return lookupIPFamily(name, ":") }

// lookupSRV resolves an SRV record, sorted by target, port, priority and
// weight as confd sorts them; none when it fails.
func lookupSRV(service, proto, name string) []*net.SRV {
	_, addrs, err := net.LookupSRV(service, proto, name)
	if err != nil {
		return []*net.SRV{}
	}
	key := func(s *net.SRV) string { return fmt.Sprintf("%s%d%d%d", s.Target, s.Port, s.Priority, s.Weight) }
	slices.SortFunc(addrs, func(a, b *net.SRV) int { return strings.Compare(key(a), key(b)) })
	return addrs
}

// fileExists reports whether a file exists.
func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func base64Encode(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func base64Decode(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

// reverse returns a list of strings or of key/value pairs reversed.
func reverse(values any) any {
	switch v := values.(type) {
	case []string:
		out := slices.Clone(v)
		slices.Reverse(out)
		return out
	case []kvPair:
		out := slices.Clone(v)
		slices.Reverse(out)
		return out
	}
	return values
}

// sortByLength sorts strings by length, shortest first.
func sortByLength(values []string) []string {
	out := slices.Clone(values)
	slices.SortStableFunc(out, func(a, b string) int { return len(a) - len(b) })
	return out
}

// sortKVByLength sorts pairs by the length of their key, shortest first.
func sortKVByLength(values []kvPair) []kvPair {
	out := slices.Clone(values)
	slices.SortStableFunc(out, func(a, b kvPair) int { return len(a.Key) - len(b.Key) })
	return out
}

// seq returns the integers first..last, like GNU seq.
func seq(first, last int) []int {
	var out []int
	for i := first; i <= last; i++ {
		out = append(out, i)
	}
	return out
}
