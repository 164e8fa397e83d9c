package readme

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/config"
)

// repoRoot is the source tree the recipes run in (they build the demo
// image from ./examples/whoami, as the README says).
const repoRoot = "../.."

// recipeEnv is what the test provides around a recipe, beyond a fresh
// Debian machine with berth on PATH, and what its output must show.
type recipeEnv struct {
	// systemNginx: Debian's nginx runs as the system service it is after
	// apt-get install nginx (stock /etc/nginx, pid file /run/nginx.pid).
	systemNginx bool
	// want matches the recipe's output: nginx answered with a whoami
	// container's host name (its short id).
	want *regexp.Regexp
}

// recipes are the README's recipes. A marked recipe missing here, or one
// here missing from the README, fails TestREADMERecipes.
var recipes = map[string]recipeEnv{
	"system-nginx":  {systemNginx: true, want: regexp.MustCompile(`(?m)^[0-9a-f]{12}$`)},
	"private-nginx": {want: regexp.MustCompile(`(?m)^[0-9a-f]{12}$`)},
}

func readmeRecipes(t *testing.T) map[string][]block {
	t.Helper()
	doc, err := readFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseRecipes("README.md", doc)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for name, blocks := range got {
		if _, ok := recipes[name]; !ok {
			errs = append(errs, fmt.Sprintf("README.md:%d: unknown recipe %q (the test knows %s)", blocks[0].line, name, strings.Join(slices.Sorted(mapsKeys(recipes)), ", ")))
		}
	}
	for name := range recipes {
		blocks, ok := got[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("README.md: recipe %q is missing (no <!-- recipe: %s --> block)", name, name))
			continue
		}
		if !slices.ContainsFunc(blocks, func(b block) bool { return b.lang == "sh" }) {
			errs = append(errs, fmt.Sprintf("README.md: recipe %q has no sh block", name))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		t.Fatal(strings.Join(errs, "\n"))
	}
	return got
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestREADMERecipes runs every recipe of the README as written, as root,
// in private mount, network and pid namespaces that look like a fresh
// Debian machine (sandbox.sh): real nginx, berth up with the embedded
// runtime and real containers, curl through nginx. Nothing it does
// reaches the host's /etc, /var, /run, /tmp, network or processes.
func TestREADMERecipes(t *testing.T) {
	all := readmeRecipes(t)
	if os.Geteuid() != 0 {
		t.Fatal("the README's recipes run as root (containers, nginx on port 80, namespaces): run the test as root")
	}
	for _, tool := range []string{"unshare", "nginx", "curl", "ip", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (scripts/install-deps installs what the tests need): %v", tool, err)
		}
	}
	bin := buildBerth(t)
	for _, name := range slices.Sorted(mapsKeys(recipes)) {
		t.Run(name, func(t *testing.T) { runRecipe(t, name, all[name], recipes[name], bin) })
	}
}

// buildBerth builds berth and berth-init as make build does.
func buildBerth(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	for _, p := range [][2]string{{"berth", "./cmd/berth"}, {"berth-init", "./runtime/embedded/containerinit/cmd/berth-init"}} {
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-trimpath", "-o", filepath.Join(bin, p[0]), p[1])
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", p[1], err, out)
		}
	}
	return bin
}

func runRecipe(t *testing.T, name string, blocks []block, env recipeEnv, bin string) {
	dir := t.TempDir()
	for _, d := range []string{"bin", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"berth", "berth-init"} {
		data, err := os.ReadFile(filepath.Join(bin, b))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", b), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh := script(name, blocks)
	if err := os.WriteFile(filepath.Join(dir, "recipe.sh"), []byte(sh), 0o644); err != nil {
		t.Fatal(err)
	}
	cg := newCgroups(t)
	if err := os.WriteFile(filepath.Join(dir, "cgroups"), []byte(cg.list), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := filepath.Abs("sandbox.sh")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	system := "0"
	if env.systemNginx {
		system = "1"
	}
	// --kill-child: if unshare dies, the namespace's init (and with it
	// every process of the namespace) is killed.
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
		"sh", sandbox, dir, root, system)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Kill() }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("recipe %s ran in %s", name, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Errorf("recipe %s failed: %v\n--- the recipe, as run (README blocks in order):\n%s--- its output:\n%s", name, err, sh, out.String())
	} else if !env.want.Match(out.Bytes()) {
		t.Errorf("recipe %s: output does not match %s\n--- output:\n%s", name, env.want, out.String())
	}
	if left := cg.leftovers(); len(left) > 0 {
		t.Errorf("recipe %s left cgroups behind: %s", name, strings.Join(left, ", "))
	}
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("recipe %s left mounts on the host: %s", name, strings.Join(m, ", "))
	}
}

// cgroups is one directory per host cgroup hierarchy, made for one run:
// the sandbox mounts them as its /sys/fs/cgroup, so that the containers'
// cgroups (berth/<id>) are created below them and never touch, or are
// touched by, another berth on the host.
type cgroups struct {
	list string   // lines for sandbox.sh: mount NAME DIR, link NAME TARGET, root DIR
	dirs []string // the directories made
}

func newCgroups(t *testing.T) *cgroups {
	t.Helper()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	leaf := "berth-readme-" + hex.EncodeToString(id)
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	cg := &cgroups{}
	t.Cleanup(cg.remove)
	var b strings.Builder
	for _, line := range strings.Split(string(mi), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		mnt := f[4]
		if mnt != "/sys/fs/cgroup" && filepath.Dir(mnt) != "/sys/fs/cgroup" {
			continue
		}
		d := filepath.Join(mnt, leaf)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cg.dirs = append(cg.dirs, d)
		switch {
		case mnt == "/sys/fs/cgroup": // cgroup v2 only
			ctrl, _ := os.ReadFile(filepath.Join(mnt, "cgroup.controllers"))
			for _, c := range strings.Fields(string(ctrl)) {
				_ = os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0o644)
			}
			fmt.Fprintf(&b, "root %s\n", d)
		default:
			if slices.Contains(strings.Split(g[2], ","), "cpuset") {
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					v, err := os.ReadFile(filepath.Join(mnt, f))
					if err == nil {
						err = os.WriteFile(filepath.Join(d, f), v, 0o644)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			fmt.Fprintf(&b, "mount %s %s\n", filepath.Base(mnt), d)
		}
	}
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.Type()&fs.ModeSymlink != 0 {
				target, _ := os.Readlink(filepath.Join("/sys/fs/cgroup", e.Name()))
				fmt.Fprintf(&b, "link %s %s\n", e.Name(), target)
			}
		}
	}
	if len(cg.dirs) == 0 {
		t.Fatal("no cgroup hierarchy under /sys/fs/cgroup")
	}
	cg.list = b.String()
	return cg
}

// leftovers lists the cgroups below the run's directories.
func (cg *cgroups) leftovers() []string {
	var out []string
	for _, d := range cg.dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() && p != d {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// remove kills what is left in the run's cgroups (only the recipe's
// processes can be there) and removes them, deepest first.
func (cg *cgroups) remove() {
	for _, d := range cg.dirs {
		var all []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			for range 50 {
				b, _ := os.ReadFile(filepath.Join(all[i], "cgroup.procs"))
				pids := strings.Fields(string(b))
				for _, p := range pids {
					if pid, err := strconv.Atoi(p); err == nil {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				if err := os.Remove(all[i]); err == nil || errors.Is(err, fs.ErrNotExist) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

// mountsUnder lists the host's mounts below dir.
func mountsUnder(dir string) []string {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// TestParseRecipes: markers, and the mistakes a README edit can make.
func TestParseRecipes(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      map[string][]string // recipe → languages of its blocks
		err       string
	}{
		{"prose blocks are not recipes", "```sh\nrm -rf /\n```\n", map[string][]string{}, ""},
		{"marked blocks in order", "<!-- recipe: a -->\n```sh\necho 1\n```\n\n<!-- recipe: a b file=/x.toml -->\n\n```toml\nk = 1\n```\n<!-- recipe: b -->\n```sh\ntrue\n```\n",
			map[string][]string{"a": {"sh", "toml"}, "b": {"toml", "sh"}}, ""},
		{"marker without a block", "<!-- recipe: a -->\nsome prose\n```sh\ntrue\n```\n", nil, "1: recipe marker is not followed by a fenced block"},
		{"marker at the end", "<!-- recipe: a -->\n", nil, "1: recipe marker is not followed by a fenced block"},
		{"marker without a name", "<!-- recipe: -->\n```sh\ntrue\n```\n", nil, "1: recipe marker names no recipe"},
		{"toml without a file", "<!-- recipe: a -->\n```toml\nk = 1\n```\n", nil, "2: toml recipe block without file=PATH"},
		{"sh with a file", "<!-- recipe: a file=/x -->\n```sh\ntrue\n```\n", nil, "2: sh recipe block with file=/x"},
		{"other language", "<!-- recipe: a -->\n```bash\ntrue\n```\n", nil, `2: recipe block is "bash"`},
		{"unterminated", "<!-- recipe: a -->\n```sh\ntrue\n", nil, "2: unterminated fenced block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRecipes("R.md", tc.doc)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), "R.md:"+tc.err) {
					t.Fatalf("err %v, want R.md:%s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			langs := map[string][]string{}
			for r, bs := range got {
				for _, b := range bs {
					langs[r] = append(langs[r], b.lang)
				}
			}
			if !reflect.DeepEqual(langs, tc.want) {
				t.Errorf("got %v, want %v", langs, tc.want)
			}
		})
	}
	s := script("a", []block{{lang: "toml", file: "/etc/b it's.toml", text: "k = 1\n", line: 3}, {lang: "sh", text: "echo $HOME\n", line: 9}})
	want := "# recipe a, from the README\nset -eux\n# README line 3\ncat >'/etc/b it'\\''s.toml' <<'BERTH_README_EOF'\nk = 1\nBERTH_README_EOF\n# README line 9\necho $HOME\n"
	if s != want {
		t.Errorf("script:\n%s\nwant:\n%s", s, want)
	}
}

// docs are the Markdown files whose configuration blocks must load.
func docs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(repoRoot, "README.md")}, files...)
}

// TestDocsTOMLLoads: every toml block of the README and docs/, recipe or
// prose, is a berth.toml that berth's strict loader accepts (an unknown
// or misspelt key, a bad value fail it).
func TestDocsTOMLLoads(t *testing.T) {
	n := 0
	for _, f := range docs(t) {
		doc, err := readFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(doc, "toml") {
			n++
			p := filepath.Join(t.TempDir(), "berth.toml")
			if err := os.WriteFile(p, []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(p); err != nil {
				t.Errorf("%s:%d: the toml block does not load: %v", f, b.line, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no toml blocks found")
	}
}

// TestConfigurationDocumentsEveryKey: every key berth.toml accepts
// (config's decoded structs) is named in docs/configuration.md.
func TestConfigurationDocumentsEveryKey(t *testing.T) {
	ref, err := readFile(filepath.Join(repoRoot, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, "config", "config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tagRE := regexp.MustCompile(`toml:"([^",]+)`)
	want := map[string]bool{"berthFile": true, "berthTemplate": true, "Daemon": true, "Runtime": true, "Store": true}
	found := 0
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || !want[ts.Name.Name] {
			return true
		}
		found++
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, fl := range st.Fields.List {
			if fl.Tag == nil {
				continue
			}
			m := tagRE.FindStringSubmatch(fl.Tag.Value)
			if m == nil {
				continue
			}
			key := m[1]
			if !strings.Contains(ref, "`"+key+"`") && !strings.Contains(ref, "["+key+"]") {
				t.Errorf("docs/configuration.md does not document %s key %q", ts.Name.Name, key)
			}
		}
		return false
	})
	if found != len(want) {
		t.Fatalf("found %d of the structs %v in config/config.go", found, want)
	}
}

// TestLayoutListsEveryPackage: the README's Layout names every top-level
// directory that holds a Go package.
func TestLayoutListsEveryPackage(t *testing.T) {
	doc, err := readFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "./...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(p, "github.com/berthd/berth/")
		top, _, _ := strings.Cut(rel, "/")
		if rel == p || seen[top] {
			continue
		}
		seen[top] = true
		if !strings.Contains(doc, "`"+top+"/") {
			t.Errorf("README.md's Layout does not list %s/ (package %s)", top, p)
		}
	}
}
