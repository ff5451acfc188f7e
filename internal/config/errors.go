package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file.
type Problem struct {
	Line  int    // 1-based line in the file; 0 when unknown
	Field string // path of the offending field, e.g. "nodes[1].api"; empty for file-level problems
	Msg   string // what is wrong; what to do
}

// Error is every problem found in one configuration file. Parse and Load
// return it as *Error; use errors.As to get at the individual problems.
type Error struct {
	File     string
	Problems []Problem // sorted by line
}

// Error returns one problem per line, formatted FILE:LINE: FIELD: MESSAGE.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// problems collects Problems while a file is read.
type problems struct {
	list []Problem
}

func problemf(line int, field, format string, args ...any) Problem {
	return Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (ps *problems) add(line int, field, format string, args ...any) {
	ps.list = append(ps.list, Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems as an *Error, or nil if there are none.
func (ps *problems) err(file string) error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	return &Error{File: file, Problems: list}
}
