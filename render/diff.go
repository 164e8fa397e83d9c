package render

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines around each hunk, as diff -u.
const diffContext = 3

// maxEditDistance bounds the Myers search (its memory grows with the
// square of the distance). Past it the changed middle (after the common
// head and tail) is shown as one replaced block: still a correct diff, just
// not a minimal one.
const maxEditDistance = 1024

// Diff returns a unified diff (diff -u format) from old to new, with the
// given file names in its header; "" when they are equal.
func Diff(oldName, newName string, old, new []byte) string {
	if string(old) == string(new) {
		return ""
	}
	a, b := splitLines(string(old)), splitLines(string(new))
	ops := diffLines(a, b)
	var sb strings.Builder
	fmt.Fprintf(&sb, "--- %s\n+++ %s\n", oldName, newName)
	for _, h := range hunks(ops) {
		writeHunk(&sb, h, a, b)
	}
	return sb.String()
}

// splitLines splits text into lines that keep their "\n"; a last line
// without one is kept as is (writeHunk marks it).
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// op is one line of an edit script: ' ' keep, '-' delete a[i], '+' insert b[j].
type op struct {
	kind byte
	i, j int // index into a (for ' ' and '-') and into b (for ' ' and '+')
}

// diffLines returns an edit script turning a into b.
func diffLines(a, b []string) []op {
	// Common head and tail first: most config changes are small.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []op
	for k := 0; k < pre; k++ {
		ops = append(ops, op{' ', k, k})
	}
	ops = append(ops, myers(a[pre:len(a)-suf], b[pre:len(b)-suf], pre, pre)...)
	for k := suf; k > 0; k-- {
		ops = append(ops, op{' ', len(a) - k, len(b) - k})
	}
	return ops
}

// myers is E. Myers' O(ND) shortest edit script; offA and offB shift the
// indexes it reports. Beyond maxEditDistance it gives up and replaces the
// whole block.
func myers(a, b []string, offA, offB int) []op {
	n, m := len(a), len(b)
	if n+m == 0 {
		return nil
	}
	limit := min(n+m, maxEditDistance)
	// v[off+k] is the furthest x reached on diagonal k = x-y.
	off := n + m + 1
	v := make([]int, 2*off+1)
	// trace[d] keeps what step d read: v on diagonals -d-1 … d+1, from
	// index off-d-1 on.
	var trace [][]int
	found := -1
	for d := 0; d <= limit && found < 0; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down from diagonal k+1: an insertion
			} else {
				x = v[off+k-1] + 1 // right from diagonal k-1: a deletion
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				found = d
				break
			}
		}
	}
	if found < 0 {
		ops := make([]op, 0, n+m)
		for i := range a {
			ops = append(ops, op{'-', offA + i, offB})
		}
		for j := range b {
			ops = append(ops, op{'+', offA + n, offB + j})
		}
		return ops
	}
	// Walk back through the saved frontiers.
	var rev []op
	x, y := n, m
	for d := found; d > 0; d-- {
		at := func(k int) int { return trace[d][k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py { // the snake after the edit
			x, y = x-1, y-1
			rev = append(rev, op{' ', offA + x, offB + y})
		}
		if pk == k+1 { // came down: an insertion
			y--
			rev = append(rev, op{'+', offA + x, offB + y})
		} else { // came right: a deletion
			x--
			rev = append(rev, op{'-', offA + x, offB + y})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, op{' ', offA + x, offB + y})
	}
	ops := make([]op, len(rev))
	for i := range rev {
		ops[i] = rev[len(rev)-1-i]
	}
	return ops
}

// hunks cuts an edit script into hunks with diffContext lines around each
// change; hunks closer than twice that are merged.
func hunks(ops []op) [][]op {
	var out [][]op
	start, end := -1, -1 // current hunk as ops[start:end]
	for i, o := range ops {
		if o.kind == ' ' {
			continue
		}
		lo, hi := max(0, i-diffContext), min(len(ops), i+diffContext+1)
		if start >= 0 && lo <= end {
			end = max(end, hi)
			continue
		}
		if start >= 0 {
			out = append(out, ops[start:end])
		}
		start, end = lo, hi
	}
	if start >= 0 {
		out = append(out, ops[start:end])
	}
	return out
}

// writeHunk writes one hunk with its @@ header.
func writeHunk(sb *strings.Builder, h []op, a, b []string) {
	var na, nb int
	for _, o := range h {
		switch o.kind {
		case ' ':
			na, nb = na+1, nb+1
		case '-':
			na++
		case '+':
			nb++
		}
	}
	fmt.Fprintf(sb, "@@ -%s +%s @@\n", hunkRange(h[0].i, na), hunkRange(h[0].j, nb))
	for _, o := range h {
		line := ""
		switch o.kind {
		case ' ', '-':
			line = a[o.i]
		case '+':
			line = b[o.j]
		}
		sb.WriteByte(o.kind)
		sb.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			sb.WriteString("\n\\ No newline at end of file\n")
		}
	}
}

// hunkRange formats "start,count" as diff -u does: 1-based start, count
// omitted when 1, and start is the line before when count is 0.
func hunkRange(start0, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", start0)
	case 1:
		return fmt.Sprintf("%d", start0+1)
	}
	return fmt.Sprintf("%d,%d", start0+1, count)
}
