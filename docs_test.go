// Package usagesync_test holds the repository's docs to its code: every log event the worker
// writes is listed once in docs/operations.md's "Logs" section, and every link to the docs resolves.
package usagesync_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/constant"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// logsDoc and logsHeading name where the log events are listed: one table row per event,
// | `event` | level | when | what to do |.
const (
	logsDoc     = "docs/operations.md"
	logsHeading = "## Logs"
	modulePath  = "github.com/usage-sync/usage-sync"
	// binary is the program whose log events the section lists (the simulator's are not the
	// worker's): the module's packages it links are the ones scanned.
	binary = "./cmd/usage-sync"
)

// TestEveryLogEventIsDocumented type-checks the production code the binary links (no _test.go
// file is part of it), finds every call of a *zap.Logger method that writes a line, resolves its
// message (the event name) through constants, variables, struct fields and parameters, and checks
// the Logs section against the result in both directions: an event written but not listed, an
// event listed twice, an event listed but no longer written, and a level the code does not use.
func TestEveryLogEventIsDocumented(t *testing.T) {
	emitted, problems, err := emittedEvents()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	documented, err := documentedEvents(logsDoc, logsHeading)
	if err != nil {
		t.Fatal(err)
	}
	if len(emitted) == 0 || len(documented) == 0 {
		t.Fatalf("found %d events in the code and %d in %s: the scan itself is broken", len(emitted), len(documented), logsDoc)
	}

	for _, name := range sortedKeys(emitted) {
		e := emitted[name]
		rows := documented[name]
		switch {
		case len(rows) == 0:
			t.Errorf("%s: event %q is written but not listed in %s, %q: add a row | `%s` | %s | when | what to do |",
				e.sites[0], display(name), logsDoc, logsHeading, display(name), strings.Join(e.levelList(), "/"))
			continue
		case len(rows) > 1:
			t.Errorf("%s lists event %q %d times (lines %v): list it once", logsDoc, display(name), len(rows), lines(rows))
		}
		row := rows[0]
		if e.levelsKnown {
			for _, l := range e.levelList() {
				if !row.levels[l] {
					t.Errorf("%s:%d: event %q is written at %s (%s) but its row says %q", logsDoc, row.line, display(name), l, e.sitesAt(l), row.level)
				}
			}
			for l := range row.levels {
				if !e.levels[l] {
					t.Errorf("%s:%d: event %q is documented at %s, which the code never writes it at (it writes %s)", logsDoc, row.line, display(name), l, strings.Join(e.levelList(), ", "))
				}
			}
		}
	}
	for _, name := range sortedKeys(documented) {
		if _, ok := emitted[name]; !ok {
			t.Errorf("%s:%d lists event %q, which no production code of %s writes any more: remove the row (or fix its name)",
				logsDoc, documented[name][0].line, display(name), binary)
		}
	}
}

// display turns a family's internal name (schedule.*) back into the doc's spelling.
func display(name string) string { return strings.ReplaceAll(name, "*", "<…>") }

// An event as the code writes it: where, and at which levels.
type event struct {
	sites       []string            // file:line of each call
	levels      map[string]bool     // zap level names
	levelSites  map[string][]string // level → file:line
	levelsKnown bool                // false when some call's level could not be told
}

func (e *event) levelList() []string { return sortedKeys(e.levels) }
func (e *event) sitesAt(l string) string {
	return strings.Join(e.levelSites[l], ", ")
}

// A documented row.
type docRow struct {
	line   int
	level  string
	levels map[string]bool
}

var levelWords = regexp.MustCompile(`\b(debug|info|warn|error|dpanic|panic|fatal)\b`)

// documentedEvents reads the event rows of the section under heading in path: the event names
// are the back-quoted words of a row's first cell (a placeholder such as <msg> stands for any
// text), its level the second cell; a row needs a fourth cell, what an operator does.
func documentedEvents(path, heading string) (map[string][]docRow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]docRow{}
	in, found := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "# ") {
			in = line == heading
			found = found || in
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := splitRow(line)
		if len(cells) < 2 || strings.Trim(cells[0], "-: ") == "" || cells[0] == "event" {
			continue // the header and its rule
		}
		names := eventCell.FindAllStringSubmatch(cells[0], -1)
		if len(names) == 0 {
			return nil, fmt.Errorf("%s:%d: a row of %q without a `back-quoted` event name in its first cell", path, n, heading)
		}
		if len(cells) < 4 || strings.TrimSpace(cells[3]) == "" {
			return nil, fmt.Errorf("%s:%d: the row of %s needs four cells: event, level, when, what to do", path, n, names[0][1])
		}
		row := docRow{line: n, level: cells[1], levels: map[string]bool{}}
		for _, w := range levelWords.FindAllString(strings.ToLower(cells[1]), -1) {
			row.levels[w] = true
		}
		if len(row.levels) == 0 {
			return nil, fmt.Errorf("%s:%d: the row of %s names no level (debug, info, warn, error)", path, n, names[0][1])
		}
		for _, m := range names {
			name := placeholder.ReplaceAllString(m[1], "*")
			out[name] = append(out[name], row)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no heading %q", path, heading)
	}
	return out, nil
}

var (
	eventCell   = regexp.MustCompile("`([a-z][a-z0-9_]*(?:\\.(?:[a-z0-9_]+|<[^>`]+>))+)`")
	placeholder = regexp.MustCompile(`<[^>]+>`)
)

// splitRow splits a Markdown table row into its trimmed cells; a | inside back quotes is text.
func splitRow(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(line, "|")
	line = strings.TrimSuffix(line, "|")
	var cells []string
	var cur strings.Builder
	quoted := false
	for _, r := range line {
		switch {
		case r == '`':
			quoted = !quoted
			cur.WriteRune(r)
		case r == '|' && !quoted:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// A listed package, as go list -json prints it.
type listedPackage struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Export     string
	Standard   bool
	Module     *struct{ Path string }
}

// emittedEvents lists the events the binary's own packages write, by name, and the log calls
// whose event it cannot tell.
func emittedEvents() (map[string]*event, []string, error) {
	cmd := exec.Command("go", "list", "-export", "-deps", "-json", binary)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("go list: %v: %s", err, stderr.String())
	}
	var pkgs []listedPackage // dependencies first
	exports := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, err
		}
		exports[p.ImportPath] = p.Export
		if p.Module != nil && p.Module.Path == modulePath {
			pkgs = append(pkgs, p)
		}
	}

	fset := token.NewFileSet()
	gc := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f, ok := exports[path]
		if !ok || f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	own := map[string]*types.Package{}
	imp := importerFunc(func(path string) (*types.Package, error) {
		if p, ok := own[path]; ok {
			return p, nil
		}
		return gc.Import(path)
	})
	info := &types.Info{
		Types: map[ast.Expr]types.TypeAndValue{},
		Defs:  map[*ast.Ident]types.Object{},
		Uses:  map[*ast.Ident]types.Object{},
	}
	var files []*ast.File
	for _, p := range pkgs {
		var pf []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				return nil, nil, err
			}
			pf = append(pf, f)
		}
		conf := types.Config{Importer: imp}
		tp, err := conf.Check(p.ImportPath, fset, pf, info)
		if err != nil {
			return nil, nil, fmt.Errorf("type-check %s: %w", p.ImportPath, err)
		}
		own[p.ImportPath] = tp
		files = append(files, pf...)
	}

	r := &resolver{fset: fset, info: info, files: files}
	root, _ := os.Getwd()
	events := map[string]*event{}
	var problems []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			levelArg, msgArg, method, ok := logCall(info, call)
			if !ok {
				return true
			}
			pos := fset.Position(call.Pos())
			site := fmt.Sprintf("%s:%d", relPath(root, pos.Filename), pos.Line)
			names, err := r.strings(msgArg)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: cannot tell which event this %s call writes (%v): name it with a string constant", site, method, err))
				return true
			}
			var levels []string
			known := true
			if levelArg == nil {
				levels = []string{strings.ToLower(method)}
			} else if vals, err := r.values(levelArg, nil); err == nil && len(names) == 1 {
				for _, v := range vals {
					l, ok := zapLevel(v)
					if !ok {
						known = false
						break
					}
					levels = append(levels, l)
				}
			} else {
				known = false // the level travels with a name chosen elsewhere: not checked
			}
			for _, name := range names {
				e := events[name]
				if e == nil {
					e = &event{levels: map[string]bool{}, levelSites: map[string][]string{}, levelsKnown: true}
					events[name] = e
				}
				e.sites = append(e.sites, site)
				e.levelsKnown = e.levelsKnown && known
				for _, l := range levels {
					e.levels[l] = true
					e.levelSites[l] = append(e.levelSites[l], site)
				}
			}
			return true
		})
	}
	return events, problems, nil
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// logCall reports whether call writes a log line through a *zap.Logger, and which arguments are
// its level (nil when the method names it) and its message.
func logCall(info *types.Info, call *ast.CallExpr) (level, msg ast.Expr, method string, ok bool) {
	sel, isSel := call.Fun.(*ast.SelectorExpr)
	if !isSel {
		return nil, nil, "", false
	}
	fn, isFunc := info.Uses[sel.Sel].(*types.Func)
	if !isFunc {
		return nil, nil, "", false
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return nil, nil, "", false
	}
	rt := recv.Type()
	if p, isPtr := rt.(*types.Pointer); isPtr {
		rt = p.Elem()
	}
	named, isNamed := rt.(*types.Named)
	if !isNamed || named.Obj().Pkg() == nil || named.Obj().Pkg().Path() != "go.uber.org/zap" || named.Obj().Name() != "Logger" {
		return nil, nil, "", false
	}
	switch fn.Name() {
	case "Debug", "Info", "Warn", "Error", "DPanic", "Panic", "Fatal":
		return nil, call.Args[0], fn.Name(), true
	case "Log":
		return call.Args[0], call.Args[1], fn.Name(), true
	}
	return nil, nil, "", false
}

// zapLevel names a zapcore.Level constant.
func zapLevel(v constant.Value) (string, bool) {
	i, ok := constant.Int64Val(v)
	if !ok {
		return "", false
	}
	names := map[int64]string{-1: "debug", 0: "info", 1: "warn", 2: "error", 3: "dpanic", 4: "panic", 5: "fatal"}
	n, ok := names[i]
	return n, ok
}

// A resolver finds the constant values an expression can take in the scanned code: a constant;
// a variable's assignments; a struct field's composite literals and assignments; a parameter's
// arguments at every call of its function. Anything else is unknown.
type resolver struct {
	fset  *token.FileSet
	info  *types.Info
	files []*ast.File
}

var errUnknown = errors.New("not a constant, nor set from one")

// strings resolves a string expression; a concatenation whose tail is unknown (the cron
// adapter's "schedule."+msg) is a family, its name the known head followed by "*".
func (r *resolver) strings(e ast.Expr) ([]string, error) {
	if b, ok := ast.Unparen(e).(*ast.BinaryExpr); ok && b.Op == token.ADD {
		heads, err := r.strings(b.X)
		if err != nil {
			return nil, err
		}
		tails, err := r.strings(b.Y)
		if errors.Is(err, errUnknown) {
			tails = []string{"*"}
		} else if err != nil {
			return nil, err
		}
		var out []string
		for _, h := range heads {
			for _, t := range tails {
				out = append(out, h+t)
			}
		}
		return out, nil
	}
	vals, err := r.values(e, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range vals {
		if v.Kind() != constant.String {
			return nil, fmt.Errorf("%s is not a string", v)
		}
		out = append(out, constant.StringVal(v))
	}
	return out, nil
}

func (r *resolver) values(e ast.Expr, seen map[types.Object]bool) ([]constant.Value, error) {
	e = ast.Unparen(e)
	if tv, ok := r.info.Types[e]; ok && tv.Value != nil {
		return []constant.Value{tv.Value}, nil
	}
	var obj types.Object
	switch x := e.(type) {
	case *ast.Ident:
		obj = r.info.Uses[x]
	case *ast.SelectorExpr:
		obj = r.info.Uses[x.Sel]
	}
	v, ok := obj.(*types.Var)
	if !ok {
		return nil, errUnknown
	}
	if seen == nil {
		seen = map[types.Object]bool{}
	}
	if seen[v] {
		return nil, nil
	}
	seen[v] = true

	var sources []ast.Expr
	if v.IsField() {
		sources = r.fieldSources(v)
	} else if fn, i := r.paramOf(v); fn != nil {
		sources = r.arguments(fn, i)
	} else {
		sources = r.assignments(v)
	}
	if len(sources) == 0 {
		return nil, errUnknown
	}
	var out []constant.Value
	for _, s := range sources {
		vals, err := r.values(s, seen)
		if err != nil {
			return nil, err
		}
		for _, val := range vals {
			if !slices.ContainsFunc(out, func(o constant.Value) bool { return constant.Compare(o, token.EQL, val) }) {
				out = append(out, val)
			}
		}
	}
	return out, nil
}

// assignments lists what is assigned to the variable v (var v = x, v := x, v = x).
func (r *resolver) assignments(v *types.Var) []ast.Expr {
	var out []ast.Expr
	r.inspect(func(n ast.Node) {
		switch s := n.(type) {
		case *ast.AssignStmt:
			if len(s.Lhs) != len(s.Rhs) {
				return
			}
			for i, l := range s.Lhs {
				if id, ok := l.(*ast.Ident); ok && (r.info.Defs[id] == v || r.info.Uses[id] == v) {
					out = append(out, s.Rhs[i])
				}
			}
		case *ast.ValueSpec:
			for i, id := range s.Names {
				if r.info.Defs[id] == v && i < len(s.Values) {
					out = append(out, s.Values[i])
				}
			}
		}
	})
	return out
}

// fieldSources lists what is stored in the field f: keyed composite literals and x.f = e.
func (r *resolver) fieldSources(f *types.Var) []ast.Expr {
	var out []ast.Expr
	r.inspect(func(n ast.Node) {
		switch s := n.(type) {
		case *ast.KeyValueExpr:
			if id, ok := s.Key.(*ast.Ident); ok && r.info.Uses[id] == f {
				out = append(out, s.Value)
			}
		case *ast.AssignStmt:
			if len(s.Lhs) != len(s.Rhs) {
				return
			}
			for i, l := range s.Lhs {
				if sel, ok := l.(*ast.SelectorExpr); ok && r.info.Uses[sel.Sel] == f {
					out = append(out, s.Rhs[i])
				}
			}
		}
	})
	return out
}

// paramOf returns the function whose parameter v is, and its index.
func (r *resolver) paramOf(v *types.Var) (types.Object, int) {
	var fn types.Object
	idx := -1
	r.inspect(func(n ast.Node) {
		d, ok := n.(*ast.FuncDecl)
		if !ok || fn != nil {
			return
		}
		i := 0
		for _, field := range d.Type.Params.List {
			for _, id := range field.Names {
				if r.info.Defs[id] == v {
					fn, idx = r.info.Defs[d.Name], i
				}
				i++
			}
			if len(field.Names) == 0 {
				i++
			}
		}
	})
	return fn, idx
}

// arguments lists the i-th argument of every call of fn in the scanned code.
func (r *resolver) arguments(fn types.Object, i int) []ast.Expr {
	var out []ast.Expr
	r.inspect(func(n ast.Node) {
		call, ok := n.(*ast.CallExpr)
		if !ok || i >= len(call.Args) {
			return
		}
		var id *ast.Ident
		switch f := call.Fun.(type) {
		case *ast.Ident:
			id = f
		case *ast.SelectorExpr:
			id = f.Sel
		}
		if id != nil && r.info.Uses[id] == fn {
			out = append(out, call.Args[i])
		}
	})
	return out
}

func (r *resolver) inspect(visit func(ast.Node)) {
	for _, f := range r.files {
		ast.Inspect(f, func(n ast.Node) bool {
			if n != nil {
				visit(n)
			}
			return true
		})
	}
}

func relPath(root, p string) string {
	if rel, err := filepath.Rel(root, p); err == nil {
		return rel
	}
	return p
}

func lines(rows []docRow) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.line)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestDocLinks checks every way the repository points into the docs: Markdown links between the
// pages and from README.md (the file, and its heading for a #fragment), docs/<page>.md#anchor and
// docs/<page>.md, "Section" citations in code, comments, scripts and manifests, and
// [page.md](page.md), "Section" citations inside the docs. A section is cited by its heading or
// by a bold lead-in (**A lost first increment.**).
func TestDocLinks(t *testing.T) {
	pages := map[string]*page{}
	load := func(path string) *page {
		path = filepath.Clean(path)
		if p, ok := pages[path]; ok {
			return p
		}
		b, err := os.ReadFile(path)
		if err != nil {
			pages[path] = nil
			return nil
		}
		p := parsePage(string(b))
		pages[path] = p
		return p
	}

	mdFiles, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	mdFiles = append(mdFiles, "README.md")
	for _, md := range mdFiles {
		b, err := os.ReadFile(md)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range mdLink.FindAllStringSubmatchIndex(text, -1) {
			target := text[m[2]:m[3]]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			where := fmt.Sprintf("%s:%d", md, lineOf(text, m[0]))
			path, frag, _ := strings.Cut(target, "#")
			file := md
			if path != "" {
				file = filepath.Join(filepath.Dir(md), path)
			}
			if _, err := os.Stat(file); err != nil {
				t.Errorf("%s: link to %s, which does not exist", where, target)
				continue
			}
			if strings.HasSuffix(file, ".md") {
				p := load(file)
				if frag != "" && !p.anchors[frag] {
					t.Errorf("%s: link to %s: %s has no heading with anchor #%s", where, target, file, frag)
				}
				if sec := quotedAfter(text[m[1]:]); sec != "" && !p.hasSection(sec) {
					t.Errorf("%s: cites %s, %q: no such heading or bold lead-in there", where, file, sec)
				}
			}
		}
	}

	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "bin" || name == "fuzz") {
				return filepath.SkipDir
			}
			return nil
		}
		if path == "docs_test.go" || !citing(path) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := string(b)
		for _, m := range docRef.FindAllStringSubmatchIndex(text, -1) {
			where := fmt.Sprintf("%s:%d", path, lineOf(text, m[0]))
			file := "docs/" + text[m[2]:m[3]]
			p := load(file)
			if p == nil {
				t.Errorf("%s: cites %s, which does not exist", where, file)
				continue
			}
			if m[4] >= 0 {
				if frag := text[m[4]+1 : m[5]]; !p.anchors[frag] {
					t.Errorf("%s: cites %s#%s: no heading there has that anchor", where, file, frag)
				}
			}
			if sec := quotedAfter(text[m[1]:]); sec != "" && !p.hasSection(sec) {
				t.Errorf("%s: cites %s, %q: no such heading or bold lead-in there", where, file, sec)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	docRef    = regexp.MustCompile(`docs/([A-Za-z0-9_-]+\.md)(#[A-Za-z0-9_-]+)?`)
	quoted    = regexp.MustCompile(`^(?:,\s*|\s*\(|\s+)\\?"([^"\\]+)\\?"`)
	commentLn = regexp.MustCompile(`\n\s*(?://|#|--)?\s*`)
	heading   = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	bold      = regexp.MustCompile(`\*\*([^*]+)\*\*`)
)

// citing reports whether path is a kind of file that cites the docs.
func citing(path string) bool {
	switch filepath.Ext(path) {
	case ".go", ".sql", ".sh", ".yaml", ".yml", ".json", ".env", ".md", ".txt":
		return true
	}
	return filepath.Base(path) == "Makefile" || filepath.Base(path) == "Dockerfile"
}

// quotedAfter returns the section a citation names right after the page: `, "Section"` or
// ` ("Section")`, across a comment's line break.
func quotedAfter(rest string) string {
	if len(rest) > 300 {
		rest = rest[:300]
	}
	rest = commentLn.ReplaceAllString(rest, " ")
	if m := quoted.FindStringSubmatch(rest); m != nil {
		return m[1]
	}
	return ""
}

// A page's anchors (GitHub's slugs of its headings) and the texts a citation may name.
type page struct {
	anchors  map[string]bool
	sections []string
}

func parsePage(text string) *page {
	p := &page{anchors: map[string]bool{}}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		slug := slugOf(m[1])
		if n := seen[slug]; n > 0 {
			p.anchors[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			p.anchors[slug] = true
		}
		seen[slug]++
		p.sections = append(p.sections, normal(m[1]))
	}
	for _, m := range bold.FindAllStringSubmatch(text, -1) {
		p.sections = append(p.sections, normal(m[1]))
	}
	return p
}

func (p *page) hasSection(s string) bool {
	s = normal(s)
	return slices.ContainsFunc(p.sections, func(h string) bool { return strings.Contains(h, s) })
}

// slugOf is GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
func slugOf(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r) || unicode.Is(unicode.Pc, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func normal(s string) string {
	s = strings.ToLower(strings.ReplaceAll(s, "`", ""))
	return strings.Join(strings.Fields(s), " ")
}

func lineOf(text string, off int) int { return strings.Count(text[:off], "\n") + 1 }
