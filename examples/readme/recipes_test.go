package readme

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// A block is one fenced code block of a Markdown file.
type block struct {
	lang    string // "sh" or "toml"
	text    string // its lines, each ending in \n
	line    int    // line of the opening fence
	recipes []string
	file    string // toml: where the recipe saves it (file=PATH)
}

// markerRE matches a recipe marker: <!-- recipe: NAME [NAME...] [file=PATH] -->.
var markerRE = regexp.MustCompile(`^<!--\s*recipe:\s*(.*?)\s*-->\s*$`)

// parseRecipes returns the marked blocks of a Markdown document by recipe
// name, in document order. A marker must be followed (blank lines aside)
// by a fenced sh or toml block; a toml block needs file=PATH (the recipe
// saves it there), an sh block takes none. Unmarked blocks are prose.
func parseRecipes(name, doc string) (map[string][]block, error) {
	out := map[string][]block{}
	sc := bufio.NewScanner(strings.NewReader(doc))
	var (
		n       int
		pending *block // a marker waiting for its fence
		cur     *block // the block being read
		errs    []string
	)
	fail := func(line int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur != nil {
			if strings.TrimSpace(line) == "```" {
				if cur.recipes != nil {
					for _, r := range cur.recipes {
						out[r] = append(out[r], *cur)
					}
				}
				cur = nil
				continue
			}
			cur.text += line + "\n"
			continue
		}
		if m := markerRE.FindStringSubmatch(line); m != nil {
			if pending != nil {
				fail(pending.line, "recipe marker is not followed by a fenced block")
			}
			pending = &block{line: n}
			for _, f := range strings.Fields(m[1]) {
				if p, ok := strings.CutPrefix(f, "file="); ok {
					pending.file = p
					continue
				}
				pending.recipes = append(pending.recipes, strings.TrimSuffix(f, ","))
			}
			if len(pending.recipes) == 0 {
				fail(n, "recipe marker names no recipe")
			}
			continue
		}
		if strings.HasPrefix(line, "```") {
			lang := strings.TrimSpace(strings.TrimPrefix(line, "```"))
			cur = &block{lang: lang, line: n}
			if pending != nil {
				cur.recipes, cur.file = pending.recipes, pending.file
				switch {
				case lang != "sh" && lang != "toml":
					fail(n, "recipe block is %q: want sh or toml", lang)
				case lang == "toml" && cur.file == "":
					fail(n, "toml recipe block without file=PATH in its marker")
				case lang == "sh" && cur.file != "":
					fail(n, "sh recipe block with file=%s", cur.file)
				}
				pending = nil
			}
			continue
		}
		if pending != nil && strings.TrimSpace(line) != "" {
			fail(pending.line, "recipe marker is not followed by a fenced block")
			pending = nil
		}
	}
	if cur != nil {
		fail(cur.line, "unterminated fenced block")
	}
	if pending != nil {
		fail(pending.line, "recipe marker is not followed by a fenced block")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// fencedBlocks returns every fenced block of lang in a Markdown document.
func fencedBlocks(doc, lang string) []block {
	var out []block
	var cur *block
	for i, line := range strings.Split(doc, "\n") {
		switch {
		case cur != nil && strings.TrimSpace(line) == "```":
			if cur.lang == lang {
				out = append(out, *cur)
			}
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.HasPrefix(line, "```"):
			cur = &block{lang: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
		}
	}
	return out
}

// script is a recipe as one sh script: its sh blocks verbatim, its toml
// blocks saved to their files, in document order.
func script(name string, blocks []block) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# recipe %s, from the README\nset -eux\n", name)
	for _, bl := range blocks {
		fmt.Fprintf(&b, "# README line %d\n", bl.line)
		switch bl.lang {
		case "sh":
			b.WriteString(bl.text)
		case "toml":
			fmt.Fprintf(&b, "cat >%s <<'BERTH_README_EOF'\n%sBERTH_README_EOF\n", shellQuote(bl.file), bl.text)
		}
	}
	return b.String()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
