package sessions

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzCommands feeds arbitrary bytes to a connection: every input ends in
// replies and a closed connection, never a panic or a hang.
func FuzzCommands(f *testing.F) {
	for _, s := range []string{
		"SET k v EX 10\r\nGET k\r\nTTL k\r\n",
		"*3\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n",
		"HSET h a 1 b 2\r\nHGETALL h\r\nHINCRBY h a 9223372036854775807\r\n",
		"MSET a 1 b 2\r\nSCAN 0 MATCH [a-\\\\ COUNT 1\r\nRENAME a b\r\n",
		"HELLO 3\r\nHGETALL h\r\nGETEX k PXAT 1\r\nEXPIRE k 9223372036854775807\r\n",
		"SET k v PX -1\r\nINCRBY k -9223372036854775808\r\nDECRBY k -9223372036854775808\r\n",
	} {
		f.Add([]byte(s))
	}
	s := New(Options{MaxValueBytes: 64, MaxKeys: 8})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Serve(ctx, ln)
	f.Cleanup(cancel)
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		go func() {
			nc.Write(in)
			nc.(*net.TCPConn).CloseWrite() // the end of the input, as a client that hangs up
		}()
		nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("the connection did not end: %v", err)
		}
	})
}
