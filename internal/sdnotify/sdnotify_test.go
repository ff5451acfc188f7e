package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// listen is a fake systemd: a datagram socket that collects what it gets.
func listen(t *testing.T, name string) (*net.UnixConn, string) {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestSend(t *testing.T) {
	conn, path := listen(t, filepath.Join(t.TempDir(), "notify"))
	n, err := New(path)
	if err != nil || !n.Enabled() {
		t.Fatalf("New(%s) = %v, enabled %v", path, err, n.Enabled())
	}
	if err := n.Send("READY=1\nSTATUS=active at epoch 12"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conn); got != "READY=1\nSTATUS=active at epoch 12" {
		t.Fatalf("got %q", got)
	}
	// An abstract socket, as systemd names it with @.
	aconn, _ := listen(t, "\x00haven-sdnotify-test-"+filepath.Base(t.TempDir()))
	an, err := New("@" + aconn.LocalAddr().String()[1:])
	if err != nil {
		t.Fatal(err)
	}
	if err := an.Send("READY=1"); err != nil {
		t.Fatal(err)
	}
	if got := read(t, aconn); got != "READY=1" {
		t.Fatalf("abstract: got %q", got)
	}
}

func TestDisabledAndBad(t *testing.T) {
	n, err := New("")
	if err != nil || n.Enabled() || n.Send("READY=1") != nil {
		t.Fatalf("no socket: %v %v", err, n.Enabled())
	}
	if _, err := New("relative/path"); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
	n, _ = New(filepath.Join(t.TempDir(), "nobody-listens"))
	if err := n.Send("READY=1"); err == nil {
		t.Fatal("sending to a missing socket succeeded")
	}
}
