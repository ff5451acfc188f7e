// Package resp reads commands and writes replies in the Redis
// serialization protocol (RESP2, and the RESP3 reply types a client asks
// for with HELLO 3), with bounded sizes and Redis's own protocol errors.
//
// Commands arrive as arrays of bulk strings (what every client library
// sends) or as inline lines (what a person types into telnet). A reader
// returns one command at a time, so pipelined commands are simply read one
// after another from the same buffer.
//
// Errors: a malformed frame (a bad length, a missing '$', unbalanced quotes)
// is a *ProtocolError with Fatal set: Redis answers "-ERR Protocol error:
// ..." and closes the connection, because the stream cannot be resynchronised
// safely, and so does a server built on this package. An argument longer
// than MaxBulk, or a command with more than MaxArgs arguments, within
// Redis's own hard limits, is read to its end and thrown away: the error
// (ErrTooBig, ErrTooManyArgs) is not fatal, the server answers it and the
// connection stays usable.
package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Redis's hard limits (proto-max-bulk-len, the multibulk count limit and
// PROTO_INLINE_MAX_SIZE): beyond them a frame is a fatal protocol error.
const (
	HardMaxBulk    = 512 << 20
	HardMaxArgs    = 1024 * 1024
	MaxInline      = 64 << 10
	DefaultMaxBulk = 1 << 20
	DefaultMaxArgs = 64 << 10
)

// ProtocolError is a frame the reader could not parse. Msg is the text
// after "ERR " in Redis's reply, e.g. "Protocol error: invalid bulk length".
type ProtocolError struct {
	Msg   string
	Fatal bool // the connection must be closed after the reply
}

func (e *ProtocolError) Error() string { return e.Msg }

// Non-fatal errors: the command was read to its end and dropped.
var (
	ErrTooBig      = errors.New("argument too big")
	ErrTooManyArgs = errors.New("too many arguments")
)

func protoErr(format string, a ...any) error {
	return &ProtocolError{Msg: "Protocol error: " + fmt.Sprintf(format, a...), Fatal: true}
}

// Reader reads commands from a connection.
type Reader struct {
	br      *bufio.Reader
	maxBulk int
	maxArgs int
	// Unauthenticated applies Redis's limits for a client that has not
	// authenticated yet: at most 10 arguments of at most 16 KiB, or a
	// fatal protocol error, so that nobody can make the server hold large
	// buffers without the password.
	Unauthenticated bool
}

// Redis's limits before authentication.
const (
	unauthArgs = 10
	unauthBulk = 16384
)

// NewReader reads from r; maxBulk bounds one argument's length and maxArgs
// the arguments of one command (0: the defaults, 1 MiB and 65536).
func NewReader(r io.Reader, maxBulk, maxArgs int) *Reader {
	if maxBulk <= 0 {
		maxBulk = DefaultMaxBulk
	}
	if maxArgs <= 0 {
		maxArgs = DefaultMaxArgs
	}
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), maxBulk: min(maxBulk, HardMaxBulk), maxArgs: min(maxArgs, HardMaxArgs)}
}

// Buffered reports how many bytes are waiting in the buffer: more than
// zero means the client pipelined another command behind this one.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadCommand returns the next command's arguments. Empty commands (an
// empty line, "*0") are skipped as Redis does. The error is io.EOF at a
// clean end, a *ProtocolError, ErrTooBig, ErrTooManyArgs, or the
// connection's error.
func (r *Reader) ReadCommand() ([][]byte, error) {
	for {
		b, err := r.br.Peek(1)
		if err != nil {
			return nil, err
		}
		var args [][]byte
		if b[0] == '*' {
			args, err = r.readMultibulk()
		} else {
			args, err = r.readInline()
		}
		if err != nil || len(args) > 0 {
			return args, err
		}
	}
}

// line reads up to "\n" and returns it without "\r\n"; longer than max
// is a fatal error named tooBig.
func (r *Reader) line(max int, tooBig string) ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.br.ReadSlice('\n')
		if len(buf)+len(frag) > max+2 {
			return nil, protoErr("%s", tooBig)
		}
		buf = append(buf, frag...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return buf, nil
}

// number parses a RESP length; Redis accepts only plain decimal digits
// with an optional leading '-'.
func number(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || (b[0] == '+') || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	return n, true
}

func (r *Reader) readMultibulk() ([][]byte, error) {
	ln, err := r.line(MaxInline, "too big mbulk count string")
	if err != nil {
		return nil, err
	}
	n, ok := number(ln[1:])
	if !ok || n > HardMaxArgs {
		return nil, protoErr("invalid multibulk length")
	}
	if r.Unauthenticated && n > unauthArgs {
		return nil, protoErr("unauthenticated multibulk length")
	}
	if n <= 0 {
		return nil, nil
	}
	tooMany := n > int64(r.maxArgs)
	var args [][]byte
	if !tooMany {
		args = make([][]byte, 0, n)
	}
	tooBig := false
	for i := int64(0); i < n; i++ {
		ln, err := r.line(MaxInline, "too big bulk count string")
		if err != nil {
			return nil, eof(err)
		}
		if len(ln) == 0 || ln[0] != '$' {
			c := byte(0)
			if len(ln) > 0 {
				c = ln[0]
			}
			return nil, protoErr("expected '$', got '%c'", c)
		}
		size, ok := number(ln[1:])
		if !ok || size < 0 || size > HardMaxBulk {
			return nil, protoErr("invalid bulk length")
		}
		if r.Unauthenticated && size > unauthBulk {
			return nil, protoErr("unauthenticated bulk length")
		}
		if tooMany || tooBig || size > int64(r.maxBulk) {
			tooBig = tooBig || size > int64(r.maxBulk)
			if _, err := r.br.Discard(int(size) + 2); err != nil {
				return nil, eof(err)
			}
			continue
		}
		arg := make([]byte, size+2)
		if _, err := io.ReadFull(r.br, arg); err != nil {
			return nil, eof(err)
		}
		// Like Redis, skip the two bytes after the data without looking.
		args = append(args, arg[:size:size])
	}
	switch {
	case tooMany:
		return nil, ErrTooManyArgs
	case tooBig:
		return nil, ErrTooBig
	}
	return args, nil
}

func eof(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *Reader) readInline() ([][]byte, error) {
	ln, err := r.line(MaxInline, "too big inline request")
	if err != nil {
		return nil, err
	}
	args, ok := SplitArgs(ln)
	if !ok {
		return nil, protoErr("unbalanced quotes in request")
	}
	if len(args) > r.maxArgs {
		return nil, ErrTooManyArgs
	}
	return args, nil
}

// SplitArgs splits an inline command as Redis's sdssplitargs does: words
// separated by blanks, "double quotes" with \n \r \t \b \a \xHH escapes,
// 'single quotes' with \' only. A closing quote must be followed by a blank.
func SplitArgs(line []byte) ([][]byte, bool) {
	var args [][]byte
	i := 0
	blank := func(c byte) bool {
		return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0
	}
	for {
		for i < len(line) && blank(line[i]) {
			i++
		}
		if i >= len(line) {
			return args, true
		}
		cur := []byte{}
		inDQ, inSQ, done := false, false, false
		for !done {
			if i >= len(line) {
				if inDQ || inSQ {
					return nil, false
				}
				break
			}
			c := line[i]
			switch {
			case inDQ:
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					cur = append(cur, hexVal(line[i+2])<<4|hexVal(line[i+3]))
					i += 3
				} else if c == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, line[i])
					}
				} else if c == '"' {
					if i+1 < len(line) && !blank(line[i+1]) {
						return nil, false
					}
					done = true
				} else {
					cur = append(cur, c)
				}
			case inSQ:
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					i++
					cur = append(cur, '\'')
				} else if c == '\'' {
					if i+1 < len(line) && !blank(line[i+1]) {
						return nil, false
					}
					done = true
				} else {
					cur = append(cur, c)
				}
			default:
				switch {
				case blank(c):
					done = true
				case c == '"':
					inDQ = true
				case c == '\'':
					inSQ = true
				default:
					cur = append(cur, c)
				}
			}
			i++
		}
		args = append(args, cur)
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
