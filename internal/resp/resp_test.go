package resp

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func read(t *testing.T, in string, maxBulk, maxArgs int) ([][]string, error) {
	t.Helper()
	r := NewReader(strings.NewReader(in), maxBulk, maxArgs)
	var out [][]string
	for {
		args, err := r.ReadCommand()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			var pe *ProtocolError
			if errors.As(err, &pe) || err == io.ErrUnexpectedEOF {
				return out, err
			}
			out = append(out, []string{"!" + err.Error()})
			continue
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		out = append(out, cmd)
	}
}

func TestReader(t *testing.T) {
	cases := []struct {
		name, in string
		want     [][]string
		err      string
	}{
		{"multibulk", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", [][]string{{"GET", "k"}}, ""},
		{"pipelined", "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nPING\r\n", [][]string{{"PING"}, {"SET", "k", ""}, {"PING"}}, ""},
		{"binary", "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", [][]string{{"GET", "a\r\nb"}}, ""},
		{"empty skipped", "*0\r\n*-1\r\n\r\n  \r\nPING\r\n", [][]string{{"PING"}}, ""},
		{"inline quotes", "SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n", [][]string{{"SET", "a b", "c'd", "A\n"}}, ""},
		{"inline bare LF", "PING\n", [][]string{{"PING"}}, ""},
		{"bad count", "*x\r\n", nil, "Protocol error: invalid multibulk length"},
		{"huge count", "*1048577\r\n", nil, "Protocol error: invalid multibulk length"},
		{"no dollar", "*1\r\n:1\r\n", nil, "Protocol error: expected '$', got ':'"},
		{"bad bulk", "*1\r\n$-3\r\n", nil, "Protocol error: invalid bulk length"},
		{"huge bulk", "*1\r\n$536870913\r\n", nil, "Protocol error: invalid bulk length"},
		{"bulk without CRLF", "*1\r\n$1\r\nab\r\n", [][]string{{"a"}}, ""},
		{"unbalanced", "SET \"a\r\n", nil, "Protocol error: unbalanced quotes in request"},
		{"quote then text", "SET \"a\"b\r\n", nil, "Protocol error: unbalanced quotes in request"},
		{"truncated", "*2\r\n$3\r\nGET\r\n", nil, io.ErrUnexpectedEOF.Error()},
		{"too big inline", strings.Repeat("a", MaxInline+10) + "\r\n", nil, "Protocol error: too big inline request"},
		// Oversize arguments and counts within Redis's hard limits are
		// read to their end and dropped; the next command still works.
		{"too big then ok", "*2\r\n$3\r\nSET\r\n$11\r\nhello world\r\nPING\r\n", [][]string{{"!argument too big"}, {"PING"}}, ""},
		{"too many then ok", "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"!too many arguments"}, {"PING"}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			maxBulk, maxArgs := 0, 0
			if strings.HasPrefix(c.name, "too big then") {
				maxBulk = 5
			}
			if strings.HasPrefix(c.name, "too many") {
				maxArgs = 2
			}
			got, err := read(t, c.in, maxBulk, maxArgs)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.Simple("OK")
	w.Error("ERR a\r\nb")
	w.Int(-3)
	w.BulkString("hi")
	w.Null()
	w.NullArray()
	w.Map(1)
	w.Verbatim("x")
	w.Proto = 3
	w.Null()
	w.Map(1)
	w.Verbatim("x")
	w.Flush()
	want := "+OK\r\n-ERR a  b\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*-1\r\n*2\r\n$1\r\nx\r\n_\r\n%1\r\n=5\r\ntxt:x\r\n"
	if b.String() != want {
		t.Fatalf("got %q\nwant %q", b.String(), want)
	}
}

// FuzzReader: any input ends in commands, an error, or EOF; never a panic,
// never an argument longer than the limit, and a fatal error stops reading.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"PING\r\nSET a \"b c\"\r\n",
		"*1\r\n$-1\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20\r\n0123456789012345678\r\n",
		"*99999999999999999999\r\n",
		"'a\\'b' \"\\x4\"\r\n",
		"*2\r\n$3\r\nGET\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 16, 4)
		for i := 0; i < 1000; i++ {
			args, err := r.ReadCommand()
			if err != nil {
				var pe *ProtocolError
				if errors.As(err, &pe) && !pe.Fatal {
					t.Fatalf("protocol errors are fatal: %v", err)
				}
				if err == ErrTooBig || err == ErrTooManyArgs {
					continue
				}
				return
			}
			if len(args) == 0 || len(args) > 4 {
				t.Fatalf("%d args", len(args))
			}
			for _, a := range args {
				if len(a) > MaxInline {
					t.Fatalf("arg of %d bytes over the limit", len(a))
				}
			}
		}
	})
}
