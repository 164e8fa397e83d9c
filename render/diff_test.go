package render

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiffAppliesWithPatch: whatever the edit, patch(1) turns the old text
// into the new one with the diff Diff produced.
func TestDiffAppliesWithPatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lines := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("server 10.0.%d.%d:80;\n", rng.IntN(4), rng.IntN(4))
		}
		return out
	}
	type pair struct{ name, old, new string }
	cases := []pair{
		{"add to empty", "", "a\nb\n"},
		{"remove all", "a\nb\n", ""},
		{"no newline at end", "a\nb", "a\nc"},
		{"newline added at end", "a\nb", "a\nb\n"},
		{"middle change", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\ntwelve\n"},
	}
	// Large: 10,000 lines with every third one changed (past the search
	// bound: one replaced block), and with 300 changed (within it).
	big := lines(10000)
	every3 := append([]string(nil), big...)
	some := append([]string(nil), big...)
	for i := range every3 {
		if i%3 == 0 {
			every3[i] = fmt.Sprintf("new %d\n", i)
		}
		if i%33 == 0 {
			some[i] = fmt.Sprintf("new %d\n", i)
		}
	}
	cases = append(cases, pair{"large, many changes", strings.Join(big, ""), strings.Join(every3, "")},
		pair{"large, some changes", strings.Join(big, ""), strings.Join(some, "")})
	for i := 0; i < 60; i++ {
		a := lines(rng.IntN(40))
		b := append([]string(nil), a...)
		for e := rng.IntN(6); e >= 0; e-- {
			switch k := rng.IntN(3); {
			case k == 0 && len(b) > 0:
				j := rng.IntN(len(b))
				b = append(b[:j], b[j+1:]...)
			case k == 1:
				j := rng.IntN(len(b) + 1)
				b = append(b[:j], append(lines(1+rng.IntN(3)), b[j:]...)...)
			case len(b) > 0:
				b[rng.IntN(len(b))] = "changed\n"
			}
		}
		cases = append(cases, pair{fmt.Sprintf("random %d", i), strings.Join(a, ""), strings.Join(b, "")})
	}
	dir := t.TempDir()
	for _, c := range cases {
		d := Diff("a/f", "b/f", []byte(c.old), []byte(c.new))
		if (d == "") != (c.old == c.new) {
			t.Fatalf("%s: empty diff %v for equal=%v", c.name, d == "", c.old == c.new)
		}
		if d == "" {
			continue
		}
		old, patch, out := filepath.Join(dir, "old"), filepath.Join(dir, "d.patch"), filepath.Join(dir, "out")
		os.WriteFile(old, []byte(c.old), 0o644)
		os.WriteFile(patch, []byte(d), 0o644)
		os.Remove(out)
		if o, err := exec.Command("patch", "--quiet", "-o", out, old, patch).CombinedOutput(); err != nil {
			t.Fatalf("%s: patch: %v\n%s\ndiff:\n%s", c.name, err, o, d)
		}
		if got := readFile(t, out); got != c.new {
			t.Fatalf("%s: patched text differs\nwant %q\ngot  %q\ndiff:\n%s", c.name, c.new, got, d)
		}
	}
}

// TestDiffMatchesDiffU: for an edit with one minimal script, the output is
// byte for byte what diff -u prints (below its header lines).
func TestDiffMatchesDiffU(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\n"
	new := "a\nb\nc\nD\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\n"
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), []byte(old), 0o644)
	os.WriteFile(filepath.Join(dir, "new"), []byte(new), 0o644)
	want, _ := exec.Command("diff", "-u", "--label", "a", "--label", "b", filepath.Join(dir, "old"), filepath.Join(dir, "new")).Output()
	if got := Diff("a", "b", []byte(old), []byte(new)); got != string(want) {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
