package resp

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Writer writes replies. Proto is 2 (the default) or 3 after HELLO 3; it
// only changes how nulls, maps and doubles are written.
type Writer struct {
	bw    *bufio.Writer
	Proto int
	num   [24]byte
}

// NewWriter writes to w through a buffer; call Flush after each batch of
// replies.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, 16<<10), Proto: 2}
}

// Flush sends what is buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

func (w *Writer) head(c byte, n int64) {
	w.bw.WriteByte(c)
	w.bw.Write(strconv.AppendInt(w.num[:0], n, 10))
	w.bw.WriteString("\r\n")
}

// Simple writes a status reply such as "+OK".
func (w *Writer) Simple(s string) {
	w.bw.WriteByte('+')
	w.bw.WriteString(clean(s))
	w.bw.WriteString("\r\n")
}

// Error writes an error reply; msg starts with its code, e.g. "ERR syntax
// error" or "WRONGPASS ...". Newlines become spaces, as Redis does.
func (w *Writer) Error(msg string) {
	w.bw.WriteByte('-')
	w.bw.WriteString(clean(msg))
	w.bw.WriteString("\r\n")
}

// Int writes an integer reply.
func (w *Writer) Int(n int64) { w.head(':', n) }

// Bulk writes a bulk string.
func (w *Writer) Bulk(b []byte) {
	w.head('$', int64(len(b)))
	w.bw.Write(b)
	w.bw.WriteString("\r\n")
}

// BulkString writes s as a bulk string.
func (w *Writer) BulkString(s string) {
	w.head('$', int64(len(s)))
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Verbatim writes a RESP3 verbatim text string (a bulk string in RESP2),
// as Redis answers INFO.
func (w *Writer) Verbatim(s string) {
	if w.Proto < 3 {
		w.BulkString(s)
		return
	}
	w.head('=', int64(len(s)+4))
	w.bw.WriteString("txt:")
	w.bw.WriteString(s)
	w.bw.WriteString("\r\n")
}

// Null writes a missing value: "$-1" in RESP2, "_" in RESP3.
func (w *Writer) Null() {
	if w.Proto >= 3 {
		w.bw.WriteString("_\r\n")
		return
	}
	w.bw.WriteString("$-1\r\n")
}

// NullArray writes a missing array: "*-1" in RESP2, "_" in RESP3.
func (w *Writer) NullArray() {
	if w.Proto >= 3 {
		w.bw.WriteString("_\r\n")
		return
	}
	w.bw.WriteString("*-1\r\n")
}

// Array starts an array of n elements; the caller writes them.
func (w *Writer) Array(n int) { w.head('*', int64(n)) }

// Map starts a map of n pairs: "%n" in RESP3, an array of 2n in RESP2.
func (w *Writer) Map(n int) {
	if w.Proto >= 3 {
		w.head('%', int64(n))
		return
	}
	w.head('*', int64(2*n))
}

// Set starts a set of n elements: "~n" in RESP3, an array in RESP2.
func (w *Writer) Set(n int) {
	if w.Proto >= 3 {
		w.head('~', int64(n))
		return
	}
	w.head('*', int64(n))
}

// Raw writes bytes as they are (a reply prepared elsewhere).
func (w *Writer) Raw(b []byte) { w.bw.Write(b) }

func clean(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
