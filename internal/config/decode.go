package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decoder walks a yaml.Node tree by hand, so that every problem can be
// reported with its line and all of them at once. Each helper reports what
// is wrong with its node and returns ok=false; callers then keep the
// default and carry on.
type decoder struct {
	problems
	lines map[string]int // field path -> line of its key (of the item in a list), for rules that span fields
	root  int            // line of the top-level mapping
}

func newDecoder() *decoder { return &decoder{lines: map[string]int{}} }

// lineFor returns the line to blame for field: its own, else that of the
// nearest enclosing field that is in the file.
func (d *decoder) lineFor(field string) int {
	for f := field; f != ""; f = parentField(f) {
		if l, ok := d.lines[f]; ok {
			return l
		}
	}
	if strings.HasPrefix(field, "timings.") {
		if l, ok := d.lines["timing"]; ok {
			return l
		}
	}
	return d.root
}

// parentField strips the last element off a field path:
// "nodes[1].api" -> "nodes[1]" -> "nodes" -> "".
func parentField(f string) string {
	i := strings.LastIndexAny(f, ".[")
	if i < 0 {
		return ""
	}
	return f[:i]
}

func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexField(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns its top-level mapping, or nil after
// reporting why there is none.
func (d *decoder) document(data []byte) (top *yaml.Node) {
	defer func() {
		// yaml.v3 recovers its own panics, but a malformed file must never
		// bring down the caller.
		if r := recover(); r != nil {
			d.add(0, "", "cannot parse the file as YAML (%v); check its syntax", r)
			top = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.add(1, "", "the file is empty; write at least cluster:, data_dir: and nodes:")
		} else {
			d.yamlError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.yamlError(err)
		return nil
	default:
		d.add(next.Line, "", "a second YAML document starts here; put the whole configuration in one document (remove the ---)")
		return nil
	}
	n := &doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	n = deref(n)
	if isNull(n) || (n.Kind == yaml.DocumentNode && len(n.Content) == 0) {
		d.add(max(n.Line, 1), "", "the file is empty; write at least cluster:, data_dir: and nodes:")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, "", "the top level is %s but must be a mapping of settings; start with cluster:, data_dir: and nodes:", describeKind(n))
		return nil
	}
	d.root = n.Line
	return n
}

func (d *decoder) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	d.add(line, "", "invalid YAML: %s; check indentation (spaces only) and quoting on or just before this line", msg)
}

// deref follows aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func describeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "not a value"
}

// fields is a mapping's values by key, aliases resolved. Keys given as
// null (key: with nothing after it) are left out, so that they read as
// absent.
type fields map[string]*yaml.Node

// mapping checks that n is a mapping whose keys are all in allowed and
// none repeated, and returns its values. A null n is an empty mapping. It
// returns nil, after reporting, if n is something else.
func (d *decoder) mapping(n *yaml.Node, path string, allowed []string) fields {
	n = deref(n)
	if isNull(n) {
		return fields{}
	}
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, path, "is %s but must be a mapping with keys %s", describeKind(n), strings.Join(allowed, ", "))
		return nil
	}
	if _, ok := d.lines[path]; !ok && path != "" {
		d.lines[path] = n.Line // a list item; a keyed mapping has its key's line
	}
	out := fields{}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, path, "a key is %s; keys must be plain names (allowed: %s)", describeKind(k), strings.Join(allowed, ", "))
			continue
		}
		field := joinField(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.add(k.Line, field, "duplicate key %q (first on line %d); remove one of them", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		if !slices.Contains(allowed, k.Value) {
			d.add(k.Line, field, "unknown field %q; allowed: %s", k.Value, strings.Join(allowed, ", "))
			continue
		}
		d.lines[field] = k.Line
		if !isNull(v) {
			out[k.Value] = v
		}
	}
	return out
}

// sequence checks that n is a list and returns its items.
func (d *decoder) sequence(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		d.add(n.Line, path, "is %s but must be a list of %s (items start with \"- \")", describeKind(n), what)
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		items[i] = deref(it)
	}
	return items, true
}

// str returns a scalar's text. Numbers and booleans are accepted as the
// text they were written as.
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.add(n.Line, path, "is %s but must be a single value (a string)", describeKind(n))
		return "", false
	}
	return n.Value, true
}

// oneOf returns a scalar that must be one of allowed.
func (d *decoder) oneOf(n *yaml.Node, path string, allowed ...string) (string, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.add(n.Line, path, "invalid value %q; allowed: %s", s, strings.Join(allowed, ", "))
		return "", false
	}
	return s, true
}

// duration returns a positive Go duration.
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.str(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.add(n.Line, path, "invalid duration %q; use a Go duration such as 1s or 500ms", s)
		return 0, false
	}
	if v <= 0 {
		d.add(n.Line, path, "must be positive, not %q; use a duration such as 1s or 500ms", s)
		return 0, false
	}
	return v, true
}

// integer returns an int within [lo, hi].
func (d *decoder) integer(n *yaml.Node, path string, lo, hi int) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.add(n.Line, path, "is %s but must be a whole number between %d and %d", describeKind(n), lo, hi)
		return 0, false
	}
	var v int
	if err := n.Decode(&v); err != nil || v < lo || v > hi {
		d.add(n.Line, path, "is %s but must be a whole number between %d and %d", n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	var v bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&v) != nil {
		d.add(n.Line, path, "is %s but must be true or false", describeKind(n))
		return false, false
	}
	return v, true
}

// strings returns a list of strings, e.g. a command's argv. A lone string is
// refused rather than split, since splitting would have to guess at quoting.
func (d *decoder) strList(n *yaml.Node, path string) ([]string, bool) {
	n = deref(n)
	if n.Kind == yaml.ScalarNode {
		d.add(n.Line, path, "is a single string but must be a list of arguments; write it as [%q] or split it into one item per argument", n.Value)
		return nil, false
	}
	items, ok := d.sequence(n, path, "strings")
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok1 := d.str(it, indexField(path, i))
		ok = ok && ok1
		out = append(out, s)
	}
	return out, ok
}

// command returns an argv: absent or empty means none; otherwise the
// program must be named.
func (d *decoder) command(n *yaml.Node, path string) ([]string, bool) {
	argv, ok := d.strList(n, path)
	if !ok {
		return nil, false
	}
	if len(argv) > 0 && strings.TrimSpace(argv[0]) == "" {
		d.add(deref(n).Line, path, "the program (first item) is empty; name the program to run, e.g. [\"/usr/bin/myservice\"]")
		return nil, false
	}
	if len(argv) == 0 {
		return nil, true
	}
	return argv, true
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// env returns a mapping of environment variables.
func (d *decoder) env(n *yaml.Node, path string) (map[string]string, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.add(n.Line, path, "is %s but must be a mapping of NAME: value", describeKind(n))
		return nil, false
	}
	out := map[string]string{}
	seen := map[string]int{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode || !envName.MatchString(k.Value) {
			d.add(k.Line, path, "invalid variable name %s; names are letters, digits and _, not starting with a digit", describeKey(k))
			ok = false
			continue
		}
		field := joinField(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.add(k.Line, field, "duplicate key %q (first on line %d); remove one of them", k.Value, first)
			ok = false
			continue
		}
		seen[k.Value] = k.Line
		if isNull(v) {
			out[k.Value] = ""
			continue
		}
		s, ok1 := d.str(v, field)
		ok = ok && ok1
		out[k.Value] = s
	}
	return out, ok
}

func describeKey(k *yaml.Node) string {
	if k.Kind == yaml.ScalarNode {
		return strconv.Quote(k.Value)
	}
	return describeKind(k)
}
