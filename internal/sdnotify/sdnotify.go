// Package sdnotify tells systemd about the service's state over the
// datagram socket named by $NOTIFY_SOCKET (the sd_notify protocol of a
// Type=notify unit): READY=1 once haven has joined its store and knows its
// role, STATUS= lines, STOPPING=1 on shutdown.
package sdnotify

import (
	"fmt"
	"net"
	"strings"
)

// Notifier sends to one notify socket. The zero Notifier (no socket: not
// started by systemd, or a Type=simple unit) sends nothing.
type Notifier struct {
	socket string
}

// New returns a notifier for socket, normally os.Getenv("NOTIFY_SOCKET").
// A name starting with @ is an abstract socket, as systemd writes it.
func New(socket string) (*Notifier, error) {
	if socket == "" {
		return &Notifier{}, nil
	}
	if !strings.HasPrefix(socket, "/") && !strings.HasPrefix(socket, "@") {
		return nil, fmt.Errorf("NOTIFY_SOCKET %q is neither a path nor an abstract socket (@name); unset it or fix the unit", socket)
	}
	return &Notifier{socket: socket}, nil
}

// Enabled reports whether there is a socket to send to.
func (n *Notifier) Enabled() bool { return n.socket != "" }

// Send sends state, e.g. "READY=1" or "STATUS=active at epoch 12"; a
// multi-line state sends several assignments in one datagram.
func (n *Notifier) Send(state string) error {
	if n.socket == "" {
		return nil
	}
	name := n.socket
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.socket, err)
	}
	return nil
}
