package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem in a configuration.
type Error struct {
	File string // as given to Parse or Load; "" for a Config built in code
	Line int    // 1-based; 0 when unknown (a default value, a Config built in code)
	Key  string // dotted key path, entries 0-based: "mx_rule[2].scope"; "" for syntax errors
	Msg  string // what is wrong, naming the table and key
}

func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = "config"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", f, e.Line, e.Msg)
	}
	return f + ": " + e.Msg
}

// joinProblems orders problems by line (unknown lines last) and joins them.
func joinProblems(ps []*Error) error {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// lineIndex maps key paths ("smtp.listen", "mx_rule[2].scope",
// "smtp.allowed_networks[1]", "mx_rule[2]" for a header) to 1-based lines.
type lineIndex struct {
	lines map[string]int
	nl    []int // offsets of '\n' in the document
}

func newLineIndex(data []byte) *lineIndex {
	x := &lineIndex{lines: map[string]int{}}
	for i, b := range data {
		if b == '\n' {
			x.nl = append(x.nl, i)
		}
	}
	return x
}

// at returns the line of a byte offset.
func (x *lineIndex) at(off uint32) int {
	return sort.SearchInts(x.nl, int(off)) + 1
}

// find returns the line of path, or of its nearest ancestor that is in the
// file (a missing key reports its table's header), or 0.
func (x *lineIndex) find(path string) int {
	if x == nil {
		return 0
	}
	for path != "" {
		if l, ok := x.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// decodeStrict decodes data into target (a pointer to a struct) refusing
// unknown keys. It returns the line index, the problems found, and whether
// target was decoded completely enough to validate.
func decodeStrict(name string, data []byte, target any) (*lineIndex, []*Error, bool) {
	w := &walker{
		file:   name,
		root:   reflect.TypeOf(target).Elem(),
		idx:    newLineIndex(data),
		counts: map[string]int{},
	}
	w.run(data)
	probs := w.probs
	ok := len(w.probs) == 0 && !w.parseFailed

	err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(target)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
	case errors.As(err, &strict):
		// Strict errors are reported after a complete decode.
		for i := range strict.Errors {
			probs = append(probs, w.unknown(&strict.Errors[i]))
		}
	case errors.As(err, &de):
		ok = false
		// go-toml stopped before its strict check: report unknown keys as
		// the walker saw them, so one run still shows every problem.
		probs = append(probs, w.unknowns...)
		// go-toml stops at its first error; when the walker already reported
		// a problem on that line in its own words, this one repeats it.
		line, _ := de.Position()
		dup := false
		for _, p := range w.probs {
			dup = dup || p.Line == line
		}
		if !dup {
			probs = append(probs, w.decodeError(de))
		}
	default:
		ok = false
		if len(w.probs) == 0 {
			probs = append(probs, &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")})
		}
	}
	return w.idx, probs, ok
}

// walker indexes lines and checks value types against the Go struct.
type walker struct {
	file        string
	root        reflect.Type
	idx         *lineIndex
	counts      map[string]int // array-of-tables path -> entries seen
	probs       []*Error
	unknowns    []*Error // unknown keys, used when go-toml stops early
	parseFailed bool
}

var (
	durationType = reflect.TypeOf(Duration(0))
	patternsType = reflect.TypeOf(Patterns(nil))
)

func (w *walker) run(data []byte) {
	var p unstable.Parser
	p.Reset(data)
	cur, curT := "", w.root
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			cur, curT = w.header(e)
		case unstable.KeyValue:
			w.keyValue(cur, curT, e)
		}
	}
	w.parseFailed = p.Error() != nil
}

func (w *walker) problem(path string, line int, format string, args ...any) {
	w.probs = append(w.probs, &Error{File: w.file, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

func keyNodes(it unstable.Iterator) []*unstable.Node {
	var ks []*unstable.Node
	for it.Next() {
		ks = append(ks, it.Node())
	}
	return ks
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// header handles [a.b] and [[a.b]] and returns the path and type of the table
// that following keys belong to (type nil when unknown).
func (w *walker) header(e *unstable.Node) (string, reflect.Type) {
	keys := keyNodes(e.Key())
	line := w.idx.at(keys[0].Raw.Offset)
	path, t := "", w.root
	for i, k := range keys {
		name := string(k.Data)
		last := i == len(keys)-1
		path = join(path, name)
		ft := w.field(t, name, path, line, "table")
		isList := ft != nil && ft.Kind() == reflect.Slice && isTable(deref(ft.Elem()))
		if last && e.Kind == unstable.ArrayTable {
			n := w.counts[path]
			w.counts[path] = n + 1
			entry := fmt.Sprintf("%s[%d]", path, n)
			w.idx.lines[entry] = line
			if ft == nil {
				return entry, nil
			}
			if !isList {
				w.problem(path, line, "%s is not a list of tables: write [%s], not [[%s]]", path, path, path)
				return entry, nil
			}
			return entry, deref(ft.Elem())
		}
		if n, seen := w.counts[path]; seen {
			path = fmt.Sprintf("%s[%d]", path, n-1)
			if isList {
				ft = deref(ft.Elem())
			}
		} else if isList {
			w.problem(path, line, "%s is a list of tables: write [[%s]], not [%s]", path, path, path)
			ft = nil
		} else if ft != nil && !isTable(ft) {
			ft = nil // go-toml reports a value used as a table
		}
		if last {
			if _, seen := w.idx.lines[path]; !seen {
				w.idx.lines[path] = line
			}
		}
		t = ft
	}
	return path, t
}

// keyValue handles key = value inside the table at cur (type curT).
func (w *walker) keyValue(cur string, curT reflect.Type, e *unstable.Node) {
	keys := keyNodes(e.Key())
	line := w.idx.at(keys[0].Raw.Offset)
	path, t := cur, curT
	for i, k := range keys {
		path = join(path, string(k.Data))
		t = w.field(t, string(k.Data), path, line, "key")
		if i < len(keys)-1 && t != nil && !isTable(t) {
			t = nil // dotted key through a value: go-toml reports it
		}
	}
	w.idx.lines[path] = line
	w.value(path, line, e.Value(), t)
}

// value records the line of a value and of its elements, and checks its TOML
// kind against t (nil: unknown key, no check).
func (w *walker) value(path string, line int, v *unstable.Node, t reflect.Type) {
	if v.Raw.Length > 0 {
		line = w.idx.at(v.Raw.Offset)
	}
	w.idx.lines[path] = line
	got := v.Kind
	if t == nil {
		switch got {
		case unstable.Array:
			i := 0
			for it := v.Children(); it.Next(); i++ {
				w.value(fmt.Sprintf("%s[%d]", path, i), line, it.Node(), nil)
			}
		case unstable.InlineTable:
			for it := v.Children(); it.Next(); {
				w.keyValue(path, nil, it.Node())
			}
		}
		return
	}
	mismatch := func() {
		w.problem(path, line, "%s: want %s, got %s", displayPath(path), describe(t), kindName(got))
	}
	switch {
	case t == durationType:
		if got != unstable.String {
			mismatch()
		} else if _, err := ParseDuration(string(v.Data)); err != nil {
			w.problem(path, line, "%s: %v", displayPath(path), err)
		}
		return
	case t == patternsType && got == unstable.String:
		return
	}
	switch t.Kind() {
	case reflect.String:
		if got != unstable.String {
			mismatch()
		}
	case reflect.Bool:
		if got != unstable.Bool {
			mismatch()
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if got != unstable.Integer {
			mismatch()
		}
	case reflect.Float32, reflect.Float64:
		if got != unstable.Float && got != unstable.Integer {
			mismatch()
		}
	case reflect.Slice:
		if got != unstable.Array {
			mismatch()
			return
		}
		i := 0
		for it := v.Children(); it.Next(); i++ {
			w.value(fmt.Sprintf("%s[%d]", path, i), line, it.Node(), deref(t.Elem()))
		}
	case reflect.Struct, reflect.Map:
		if got != unstable.InlineTable {
			mismatch()
			return
		}
		for it := v.Children(); it.Next(); {
			w.keyValue(path, t, it.Node())
		}
	}
}

// field returns the type of key name in a table of type t, nil if unknown.
// go-toml matches field names case-insensitively; penstock.toml keys are
// case-sensitive, so a near miss in case is reported here.
func (w *walker) field(t reflect.Type, name, path string, line int, what string) reflect.Type {
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.Map:
		return deref(t.Elem())
	case reflect.Struct:
		if f, ok := fieldByTag(t, name); ok {
			return deref(f.Type)
		}
		for _, tag := range tags(t) {
			if strings.EqualFold(tag, name) {
				w.problem(path, line, "unknown key %q: keys are case-sensitive, write %q", name, tag)
				return nil
			}
		}
		w.unknowns = append(w.unknowns, w.unknownError(keyParts(path), path, line, what))
	}
	return nil
}

// keyParts turns a path into its key names: "mx_rule[2].x" -> [mx_rule x].
func keyParts(path string) []string {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		parts[i], _ = splitSeg(p)
	}
	return parts
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isTable(t reflect.Type) bool {
	return t != nil && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map)
}

func tomlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); tomlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func tags(t reflect.Type) []string {
	var ts []string
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for i := 0; i < t.NumField(); i++ {
		if n := tomlName(t.Field(i)); n != "" {
			ts = append(ts, n)
		}
	}
	return ts
}

func describe(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration string like "5m" or "1h30m"`
	case t == patternsType:
		return "a string or a list of strings"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		e := deref(t.Elem())
		switch {
		case e == durationType:
			return `a list of duration strings like ["5m", "1h"]`
		case isTable(e):
			return "a list of tables"
		case e.Kind() == reflect.String:
			return "a list of strings"
		}
		return "a list"
	case reflect.Struct, reflect.Map:
		return "a table"
	}
	return t.String()
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "a whole number"
	case unstable.Float:
		return "a number with a fraction"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	case unstable.DateTime, unstable.LocalDate, unstable.LocalDateTime, unstable.LocalTime:
		return "a date/time"
	}
	return k.String()
}

// displayPath renders a key path for people: "mx_rule[2].scope" ->
// "[[mx_rule]] #3 scope", "smtp.allowed_networks[1]" -> "[smtp]
// allowed_networks #2", "source" -> "source".
func displayPath(path string) string {
	segs := strings.Split(path, ".")
	key := displaySeg(segs[len(segs)-1])
	if len(segs) == 1 {
		return key
	}
	return tableTitle(segs[:len(segs)-1]) + " " + key
}

func splitSeg(seg string) (name string, idx int) {
	name, rest, ok := strings.Cut(seg, "[")
	if !ok {
		return seg, -1
	}
	n, err := strconv.Atoi(strings.TrimSuffix(rest, "]"))
	if err != nil {
		return seg, -1
	}
	return name, n
}

func displaySeg(seg string) string {
	name, i := splitSeg(seg)
	if i < 0 {
		return name
	}
	return fmt.Sprintf("%s #%d", name, i+1)
}

func tableTitle(segs []string) string {
	names := make([]string, len(segs))
	idx := -1
	for i, s := range segs {
		names[i], idx = splitSeg(s)
	}
	h := strings.Join(names, ".")
	if idx < 0 {
		return "[" + h + "]"
	}
	return fmt.Sprintf("[[%s]] #%d", h, idx+1)
}

// parentOf follows key parts from the root and returns the type of the table
// they name and how to show it: "[smtp]", "[[mx_rule]]", or "" for the top.
func (w *walker) parentOf(parts []string) (reflect.Type, string) {
	if len(parts) == 0 {
		return w.root, ""
	}
	t := w.root
	list := false
	for _, p := range parts {
		if t == nil {
			break
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByTag(t, p)
			if !ok {
				t = nil
				continue
			}
			t = deref(f.Type)
		case reflect.Map:
			t = deref(t.Elem())
		default:
			t = nil
			continue
		}
		list = false
		if t.Kind() == reflect.Slice && isTable(deref(t.Elem())) {
			t, list = deref(t.Elem()), true
		}
	}
	h := strings.Join(parts, ".")
	if list {
		return t, "[[" + h + "]]"
	}
	return t, "[" + h + "]"
}

// unknown turns one strict-mode error into an Error.
func (w *walker) unknown(e *toml.DecodeError) *Error {
	key := []string(e.Key())
	line, _ := e.Position()
	if len(key) == 0 {
		return &Error{File: w.file, Line: line, Msg: strings.TrimPrefix(e.Error(), "toml: ")}
	}
	// go-toml's key omits the path inside inline tables
	// (sources = [{wieght = 2}] comes as pool.wieght); the walker's own
	// report of the same key on the same line names it fully.
	name := key[len(key)-1]
	for _, u := range w.unknowns {
		if u.Line == line && (u.Key == name || strings.HasSuffix(u.Key, "."+name)) {
			return u
		}
	}
	what := "key"
	if strings.Contains(e.Error(), "missing table") {
		what = "table"
	}
	return w.unknownError(key, strings.Join(key, "."), line, what)
}

// unknownError reports key (its parts from the top; path is its full key
// path) as unknown; what is "key" or "table".
func (w *walker) unknownError(key []string, path string, line int, what string) *Error {
	name := key[len(key)-1]
	pt, where := w.parentOf(key[:len(key)-1])
	var msg string
	switch {
	case where != "":
		msg = fmt.Sprintf("unknown %s %q in %s", what, name, where)
	case what == "table":
		msg = fmt.Sprintf("unknown table [%s]", name)
	default:
		msg = fmt.Sprintf("unknown key %q at top level", name)
	}
	if s := suggest(name, tags(pt)); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &Error{File: w.file, Line: line, Key: path, Msg: msg}
}

// decodeError turns a go-toml syntax or decoding error into an Error.
func (w *walker) decodeError(e *toml.DecodeError) *Error {
	key := []string(e.Key())
	line, _ := e.Position()
	msg := strings.TrimPrefix(e.Error(), "toml: ")
	if len(key) > 0 {
		_, where := w.parentOf(key[:len(key)-1])
		k := key[len(key)-1]
		if where != "" {
			k = where + " " + k
		}
		msg = k + ": " + msg
	}
	return &Error{File: w.file, Line: line, Key: strings.Join(key, "."), Msg: msg}
}

// suggest returns the candidate closest to name by edit distance, if close
// enough to be a typo.
func suggest(name string, candidates []string) string {
	best, bestD := "", len(name)/3+1
	if bestD > 3 {
		bestD = 3
	}
	for _, c := range candidates {
		if d := editDistance(name, c); d <= bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
