// Command keyward is the Keyward server (keyward serve) and its client,
// whose commands mirror the Azure CLI's.
package main

import (
	"os"

	"github.com/keyward/keyward/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
