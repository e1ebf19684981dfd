// Package cli implements the keyward command line. Client commands mirror
// the Azure CLI (az): the same command words and flags, JSON output shaped
// like az's, -o json|tsv|table and --query (JMESPath) on every command.
// They talk HTTPS to a Keyward server the way az talks to Azure; only
// "keyward serve" runs the server itself.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// env carries the process's streams and settings into commands, so tests
// can run commands in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configDir      string
}

// Main runs the command line and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, configDir: os.Getenv("KEYWARD_CONFIG_DIR")}
	if e.configDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		e.configDir = filepath.Join(home, ".keyward")
	}
	return run(ctx, e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(e.stderr, "ERROR: %s\n", ue.msg)
			return 2
		}
		fmt.Fprintf(e.stderr, "ERROR: %s\n", err)
		return 1
	}
	return 0
}

// usageError is a mistake in the command line itself.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "keyward",
		Short:         "Keyward: a self-hosted key-management service that speaks Azure Managed HSM",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(e), newLoginCmd(e), newADCmd(e), newKeyvaultCmd(e), newPIMCmd(e), newStorageCmd(e), newMonitorCmd(e), newAuditCmd(e),
		newGroupCmd(e), newARMRoleCmd(e), newIdentityCmd(e), newAccountCmd(e), newLogoutCmd(e))
	return root
}
