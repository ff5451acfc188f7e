// Command haven makes a service highly available. See the README.
package main

import (
	"os"

	"github.com/haven-ha/haven/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
