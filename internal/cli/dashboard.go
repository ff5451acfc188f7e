package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// runDashboard holds the dashboard's helper commands; for now
// `haven dashboard hash-password`, which makes the bcrypt hash for a
// dashboard user's password_hash.
func runDashboard(args []string, out, errw io.Writer) int {
	if len(args) == 0 || args[0] != "hash-password" {
		fmt.Fprintln(errw, "usage: haven dashboard hash-password [--cost N]   (reads the password from stdin, prints its bcrypt hash)")
		return exitUsage
	}
	fs := newFlags("dashboard hash-password", errw)
	cost := fs.Int("cost", 12, "bcrypt cost, 10 to 16: each step doubles the time a login (and a guess) takes")
	if code, ok := parse(fs, args[1:], 0); !ok {
		return code
	}
	if *cost < 10 || *cost > 16 {
		fmt.Fprintln(errw, "haven dashboard hash-password: --cost must be from 10 to 16")
		return exitUsage
	}
	password, err := readPassword(os.Stdin, errw)
	if err != nil {
		fmt.Fprintf(errw, "haven dashboard hash-password: %v\n", err)
		return exitFailure
	}
	if len(password) < 8 {
		fmt.Fprintln(errw, "haven dashboard hash-password: the password is shorter than 8 characters; choose a longer one")
		return exitUsage
	}
	if len(password) > 72 {
		fmt.Fprintln(errw, "haven dashboard hash-password: bcrypt reads at most 72 bytes of a password; choose a shorter one")
		return exitUsage
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), *cost)
	if err != nil {
		fmt.Fprintf(errw, "haven dashboard hash-password: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(out, string(hash))
	return exitOK
}

// readPassword reads one line from in; on a terminal it asks twice, without
// echo.
func readPassword(in *os.File, errw io.Writer) (string, error) {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprint(errw, "Password: ")
		a, err := term.ReadPassword(fd)
		fmt.Fprintln(errw)
		if err != nil {
			return "", err
		}
		fmt.Fprint(errw, "Again: ")
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(errw)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", fmt.Errorf("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
